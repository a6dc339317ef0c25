"""Transcription: audio files -> text, with a trained checkpoint.

    recognizer = asr.load("runs/synthetic/latest/checkpoints/last.ckpt")
    recognizer.transcribe("speech.flac").text
    [t.text for t in recognizer.transcribe(["a.wav", "b.ogg"])]

Files are read at any sample rate and channel count (``asr.audio``), sorted by duration and
batched up to ``batch_seconds`` of padded audio, run through the model on its device, and
decoded. ``transcribe_files`` yields an :class:`~asr.audio.AudioError` in place of a file that
cannot be read, so a command line can report it and go on with the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from asr.audio import AudioError, audio_info, load_audio
from asr.checkpoint import load_checkpoint
from asr.decoding import GreedyDecoder
from asr.model import AcousticModel
from asr.text import CharTokenizer

DEFAULT_BATCH_SECONDS = 120.0  # padded audio per inference batch


@dataclass
class Transcript:
    """The text of one recording."""

    path: str | None
    text: str
    duration: float  # seconds of audio


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Recognizer:
    """A trained acoustic model, its tokenizer and a decoder, on one device."""

    def __init__(self, model: AcousticModel, tokenizer: CharTokenizer, device: str | torch.device | None = "auto",
                 decoder: GreedyDecoder | None = None) -> None:
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.decoder = decoder or GreedyDecoder(tokenizer.blank)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = "auto") -> Recognizer:
        loaded = load_checkpoint(path)
        return cls(loaded.model, loaded.tokenizer, device)

    @property
    def sample_rate(self) -> int:
        return self.model.feature_config.sample_rate

    @torch.inference_mode()
    def transcribe_waveforms(self, waveforms: Sequence[torch.Tensor]) -> list[str]:
        """Mono ``(samples,)`` waveforms at ``sample_rate`` -> texts, in one batch."""
        lengths = torch.tensor([w.numel() for w in waveforms])
        batch = torch.zeros(len(waveforms), int(lengths.max()))
        for i, w in enumerate(waveforms):
            batch[i, : w.numel()] = w
        log_probs, out_lengths = self.model(batch.to(self.device), lengths.to(self.device))
        return [self.tokenizer.decode(h.tokens) for h in self.decoder(log_probs, out_lengths)]

    def transcribe_files(self, paths: Iterable[str | os.PathLike],
                         batch_seconds: float = DEFAULT_BATCH_SECONDS) -> Iterator[Transcript | AudioError]:
        """Yield, in input order, a Transcript or the AudioError of each file."""
        paths = [str(p) for p in paths]
        durations: dict[int, float] = {}
        results: dict[int, Transcript | AudioError] = {}
        for i, p in enumerate(paths):
            try:
                durations[i] = audio_info(p).duration
            except AudioError as err:
                results[i] = err
        pending = sorted(durations, key=durations.get)
        next_out = 0
        for group in _batches(pending, durations, batch_seconds):
            waves = {}
            for i in group:
                try:
                    waves[i] = load_audio(paths[i], self.sample_rate)
                except AudioError as err:
                    results[i] = err
            if waves:
                for i, text in zip(waves, self.transcribe_waveforms(list(waves.values()))):
                    results[i] = Transcript(paths[i], text, durations[i])
            while next_out < len(paths) and next_out in results:
                yield results.pop(next_out)
                next_out += 1
        while next_out < len(paths):
            yield results.pop(next_out)
            next_out += 1

    def transcribe(self, audio: str | os.PathLike | Sequence[str | os.PathLike],
                   batch_seconds: float = DEFAULT_BATCH_SECONDS) -> Transcript | list[Transcript]:
        """One path -> one Transcript; a list of paths -> a list. Raises AudioError on an unreadable file."""
        single = isinstance(audio, (str, os.PathLike))
        out = []
        for result in self.transcribe_files([audio] if single else audio, batch_seconds):
            if isinstance(result, AudioError):
                raise result
            out.append(result)
        return out[0] if single else out


def _batches(order: list[int], durations: dict[int, float], budget: float) -> Iterator[list[int]]:
    """Consecutive groups of ``order`` whose longest duration x count stays within ``budget``."""
    group: list[int] = []
    for i in order:
        if group and durations[i] * (len(group) + 1) > budget:
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def load(path: str | os.PathLike, device: str | torch.device | None = "auto") -> Recognizer:
    """Load a training checkpoint for transcription."""
    return Recognizer.load(path, device)


def expand_paths(inputs: Iterable[str | os.PathLike], extensions: Sequence[str]) -> list[Path]:
    """Files as given; folders searched recursively for files with one of ``extensions``."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in extensions and p.is_file()))
        else:
            out.append(item)
    return out
