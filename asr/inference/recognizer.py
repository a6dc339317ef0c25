"""Transcription: audio files of any length -> text and timed words, with a trained checkpoint
or an export of one (TorchScript or ONNX, float32 or int8: ``scripts/export.py``).

    recognizer = asr.load("runs/synthetic/latest/checkpoints/last.ckpt")   # or "model.int8.onnx"
    recognizer.transcribe("speech.flac").text
    [t.text for t in recognizer.transcribe(["a.wav", "b.ogg"])]
    recognizer.transcribe("talk.flac", words=True).words  # [Word("hello", 0.52, 0.80, 0.97), ...]

The model is an :class:`~asr.inference.emitters.Emitter` (``recognizer.runner``): PyTorch, TorchScript or
ONNX Runtime, behind the same windowing, batching and decoding. Two stages, usable apart: :meth:`Recognizer.emissions` turns files into CPU log-probs
(:class:`Emission`), :meth:`Recognizer.decode` turns one into a :class:`Transcript` with any
decoder (evaluation decodes the same log-probs greedily and with beam search).

Files up to one window long (``WindowConfig.window``, 28 s by default) are read whole, sorted by
duration and batched up to ``batch_seconds`` of padded audio; longer ones are streamed in
overlapping windows (:mod:`asr.inference.windows`). ``asr.load`` decodes with the options tuned for the
checkpoint by ``scripts/tune_lm.py`` when there are some (``<checkpoint>.decoding.json``), else
greedily. ``transcribe_files`` yields an :class:`~asr.audio.AudioError` in place of a file that
cannot be read, so a command line can report it and go on with the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from asr.audio import AudioError, Segment, Source, audio_info, load_audio
from asr.decoding.beam import build_decoder
from asr.decoding.greedy import Decoder, hypothesis_text, split_at_pauses
from asr.decoding.options import DecodeOptions, stored_options
from asr.inference.alignment import Word, align_words
from asr.inference.emitters import Emitter, TorchEmitter, open_model, pick_device  # noqa: F401 (pick_device: API)
from asr.inference.onnx_stream import OnnxStreamingModel
from asr.inference.stream import DEFAULT_ENDPOINT, Stream, stream_decoder
from asr.inference.windows import (
    Window,
    WindowConfig,
    merge_frames,
    run_windows,
    segment_bounds,
    stream_frames,
    stream_segments,
)
from asr.memory import bound_kernel_cache
from asr.model.acoustic import AcousticModel
from asr.model.streaming import StreamingModel
from asr.text import CharTokenizer

DEFAULT_BATCH_SECONDS = 120.0  # padded audio per inference batch
# Streaming latency for a model trained on whole utterances (seconds): benchmarks/streaming.py measures it
DEFAULT_CHUNK, DEFAULT_RIGHT_CONTEXT = 0.5, 0.5

Progress = Callable[[float], None]  # told the seconds of audio just processed


@dataclass
class Transcript:
    """The text of one recording, and its words with times when asked for."""

    path: str | None
    text: str
    duration: float  # seconds of audio
    words: list[Word] = field(default_factory=list)


@dataclass
class Emission:
    """The model's output for one recording."""

    path: str | None
    log_probs: torch.Tensor  # (frames, vocab) float32 on the CPU
    duration: float  # seconds of audio


# What the Recognizer makes of a long file's log-probs, given chunk by chunk: (path, chunks, duration) -> result
LongFile = Callable[[str, Iterator[tuple[int, torch.Tensor]], float], Transcript]


class Recognizer:
    """An acoustic model (any :class:`~asr.inference.emitters.Emitter`), its tokenizer and a decoder.

    Args:
        model: an :class:`AcousticModel` (from ``asr.model.checkpoint.load_checkpoint``), run on ``device``;
            or an Emitter (``asr.inference.emitters.open_model``: an exported TorchScript or ONNX file), which
            runs where it was opened.
        tokenizer: the model's.
        device: "auto" (CUDA if available), "cpu", "cuda:1", ... for an AcousticModel.
        decoder: a ready decoder; if None, one is built from ``options``.
        options: decoding options (greedy when None).
        windows: how long recordings are cut.
    """

    def __init__(self, model: AcousticModel | Emitter, tokenizer: CharTokenizer,
                 device: str | torch.device | None = "auto", decoder: Decoder | None = None,
                 options: DecodeOptions | None = None, windows: WindowConfig | None = None) -> None:
        self.runner = model if isinstance(model, Emitter) else TorchEmitter.of_model(model, device)
        self.device = self.runner.device
        self.sample_rate = self.runner.sample_rate
        self.tokenizer = tokenizer
        self.options = options or DecodeOptions()
        self.decoder = decoder or build_decoder(self.options, tokenizer)
        self.windows = windows or WindowConfig()
        self._engines: dict[tuple[float | None, float | None], StreamingModel] = {}  # stream() latency -> engine
        bound_kernel_cache()  # every window of a long recording has its own shape (asr.memory)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = "auto",
             options: DecodeOptions | None = None, windows: WindowConfig | None = None,
             backend: str | None = None, threads: int | None = None) -> Recognizer:
        """Load a checkpoint, or a TorchScript or ONNX export of one (float32 or int8:
        ``asr.inference.emitters.open_model``); decode with ``options``, else those tuned for it, else greedily."""
        emitter, tokenizer = open_model(path, backend, device, threads)
        options = options or stored_options(path) or DecodeOptions()
        return cls(emitter, tokenizer, options=options, windows=windows)

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return self.sample_rate / self.runner.samples_per_frame

    def transcribe_waveforms(self, waveforms: Sequence[torch.Tensor], batch_seconds: float | None = None) -> list[str]:
        """Mono ``(samples,)`` waveforms at ``sample_rate`` -> texts: in one batch, or sorted by
        duration and batched up to ``batch_seconds`` of padded audio, as files are."""
        durations = {i: w.numel() / self.sample_rate for i, w in enumerate(waveforms)}
        groups = (_batches(sorted(durations, key=durations.get), durations, batch_seconds) if batch_seconds
                  else [list(durations)])
        texts = {}
        for group in groups:
            for i, lp in zip(group, run_windows(self.runner, [waveforms[i] for i in group], self.tokenizer.blank)):
                texts[i] = self.decode(Emission(None, lp, durations[i])).text
        return [texts[i] for i in range(len(waveforms))]

    # --- streams --------------------------------------------------------------------------------

    def stream(self, sample_rate: int | None = None, chunk: float | None = None, right_context: float | None = None,
               endpoint: float = DEFAULT_ENDPOINT) -> Stream:
        """A stream to feed audio as it arrives (:mod:`asr.inference.stream`), decoded with this
        recognizer's decoder. ``chunk`` and ``right_context`` (seconds) default to the model's own
        (``model.chunk``), or DEFAULT_CHUNK and DEFAULT_RIGHT_CONTEXT for a model trained on whole
        utterances; ``sample_rate`` (default the model's) is what ``accept`` is given. A streaming ONNX
        export (``export.py --stream``) streams in ONNX Runtime at the latency it was exported with."""
        engine = self._stream_engine(chunk, right_context)
        return Stream(engine, stream_decoder(self.decoder, self.tokenizer.blank), self.tokenizer,
                      sample_rate or self.sample_rate, self.options.word_pause, endpoint)

    def _stream_engine(self, chunk: float | None, right_context: float | None) -> StreamingModel | OnnxStreamingModel:
        source = self.runner.path or self.runner.description
        engine = getattr(self.runner, "stream_engine", None)
        if engine is not None:  # a streaming ONNX export: its latency is in the graph
            rate = engine.frame_rate
            if chunk is not None and (max(1, round(chunk * rate)), round((right_context or 0.0) * rate)) != \
                    (engine.chunk, engine.right_frames):
                raise ValueError(f"{source}: streams with chunk {engine.chunk / rate:g} s and right context "
                                 f"{engine.right_frames / rate:g} s, fixed at export; for another latency export "
                                 "again: scripts/export.py CHECKPOINT -o model.stream.onnx --stream --chunk S "
                                 "--right-context S")
            return engine
        module = getattr(self.runner, "module", None)
        if not isinstance(module, AcousticModel):
            raise ValueError(f"{source}: this {self.runner.description} export does not stream; export a streaming "
                             "ONNX file from its checkpoint: scripts/export.py CHECKPOINT -o model.stream.onnx --stream "
                             "(or stream the checkpoint itself)")
        if chunk is None and module.chunk_frames == 0:
            chunk, right_context = DEFAULT_CHUNK, DEFAULT_RIGHT_CONTEXT
        key = (chunk, right_context)
        if key not in self._engines:
            self._engines[key] = StreamingModel(module, chunk, right_context)
        return self._engines[key]

    # --- files -> log-probs ---------------------------------------------------------------------

    def emissions(self, paths: Iterable[Source], batch_seconds: float = DEFAULT_BATCH_SECONDS,
                  progress: Progress | None = None) -> Iterator[Emission | AudioError]:
        """Yield, in input order, the Emission or the AudioError of each file."""
        yield from _in_order(self._emissions([p if isinstance(p, Segment) else str(p) for p in paths], batch_seconds,
                                             progress))

    def _emissions(self, paths: list[Source], batch_seconds: float, progress: Progress | None,
                   long_file: LongFile | None = None) -> Iterator[tuple[int, Emission | Transcript | AudioError]]:
        """(input index, result) as they are ready: short files batched by duration, then long ones,
        each the Emission of its stream of log-probs (:func:`~asr.inference.windows.stream_frames`), or
        what ``long_file`` makes of that stream."""
        durations, samples = {}, {}
        for i, p in enumerate(paths):
            try:
                info = audio_info(p)
            except AudioError as err:
                yield i, err
                continue
            durations[i] = info.duration
            samples[i] = -(-info.frames * self.sample_rate // info.sample_rate)  # at our rate, as resampling rounds
        short = sorted((i for i in durations if durations[i] <= self.windows.window), key=durations.get)
        for group in _batches(short, durations, batch_seconds):
            yield from self._short_batch(paths, group, durations, progress)
        batch_windows = max(1, int(batch_seconds // self.windows.window))
        for i in (i for i in durations if durations[i] > self.windows.window):
            frames = self._long_frames(paths[i], samples[i], durations[i], batch_windows, progress)
            try:
                if long_file is None:
                    total = self.runner.output_frames(samples[i])
                    yield i, Emission(str(paths[i]), merge_frames(frames, total, self.runner.vocab_size), durations[i])
                else:
                    yield i, long_file(str(paths[i]), frames, durations[i])
            except AudioError as err:
                yield i, err

    def _long_frames(self, path: Source, n_samples: int, duration: float, batch_windows: int,
                     progress: Progress | None) -> Iterator[tuple[int, torch.Tensor]]:
        """A long file's log-probs, chunk by chunk as its windows are done
        (:func:`~asr.inference.windows.stream_frames`)."""
        done = [0.0]  # seconds reported to progress: pauses are skipped, reported at the end

        def on_window(w: Window) -> None:
            done[0] += (w.keep_end - w.keep_start) / self.frame_rate
            progress((w.keep_end - w.keep_start) / self.frame_rate)

        yield from stream_frames(path, self.runner, self.sample_rate, n_samples, self.windows, batch_windows,
                                 self.tokenizer.blank, on_window=on_window if progress else None,
                                 boundary=self.tokenizer.encode(" ")[0])
        if progress:
            progress(max(0.0, duration - done[0]))

    def _short_batch(self, paths: list[Source], group: list[int], durations: dict[int, float],
                     progress: Progress | None) -> Iterator[tuple[int, Emission | AudioError]]:
        waves = {}
        for i in group:
            try:
                waves[i] = load_audio(paths[i], self.sample_rate)
            except AudioError as err:
                yield i, err
        if waves:
            for i, log_probs in zip(waves, run_windows(self.runner, list(waves.values()), self.tokenizer.blank)):
                yield i, Emission(str(paths[i]), log_probs, durations[i])
        if progress:
            progress(sum(durations[i] for i in group))

    # --- log-probs -> text ----------------------------------------------------------------------

    def decode(self, emission: Emission, words: bool = False, decoder: Decoder | None = None) -> Transcript:
        """Decode one emission (in segments of at most ``windows.segment`` seconds, cut at pauses)
        with the recognizer's decoder or ``decoder``; a pause of ``options.word_pause`` ends a word;
        with ``words``, align the text to get each word's times and confidence.

        Greedy decoding runs here on the CPU copy of the log-probs (a few kilobytes per second of
        audio); the GreedyDecoder itself runs batched on any device (validation uses it on the GPU).
        """
        log_probs, space = emission.log_probs, self.tokenizer.encode(" ")[0]
        segments = ((start, log_probs[start:end])
                    for start, end in segment_bounds(log_probs, self._segment_frames, self.tokenizer.blank, space))
        return self._decode_segments(emission.path, segments, emission.duration, words, decoder)

    def decode_stream(self, path: str | None, frames: Iterable[tuple[int, torch.Tensor]], duration: float,
                      words: bool = False, decoder: Decoder | None = None) -> Transcript:
        """:meth:`decode` of a recording's log-probs given chunk by chunk, in order (``(first frame,
        (frames, vocab) log-probs)``: :func:`~asr.inference.windows.stream_frames`): each segment is decoded
        as soon as its frames are in and let go, so memory stays flat for any length; the same transcript."""
        segments = stream_segments(frames, self._segment_frames, self.tokenizer.blank, self.tokenizer.encode(" ")[0])
        return self._decode_segments(path, segments, duration, words, decoder)

    @property
    def _segment_frames(self) -> int:
        """Longest segment decoded at once, frames."""
        return max(1, round(self.windows.segment * self.frame_rate))

    def _decode_segments(self, path: str | None, segments: Iterable[tuple[int, torch.Tensor]], duration: float,
                         words: bool, decoder: Decoder | None) -> Transcript:
        """``(first frame, log-probs)`` segments of a recording, in order -> its Transcript."""
        decoder = decoder or self.decoder
        space = self.tokenizer.encode(" ")[0]
        pause = round(self.options.word_pause * self.frame_rate)
        texts, timed = [], []
        for start, piece in segments:
            hyp = decoder(piece[None], torch.tensor([piece.shape[0]]))[0]
            text = hypothesis_text(split_at_pauses(hyp, space, pause), self.tokenizer)
            if text:
                texts.append(text)
                if words:
                    timed += align_words(piece, text, self.tokenizer, self.frame_rate, start / self.frame_rate)
        # The last frame's span may reach past the end of the audio by less than a frame.
        timed = [replace(w, end=min(w.end, duration)) if w.end > duration else w for w in timed]
        return Transcript(path, " ".join(texts), duration, timed)

    def transcribe_files(self, paths: Iterable[Source], batch_seconds: float = DEFAULT_BATCH_SECONDS,
                         words: bool = False, progress: Progress | None = None) -> Iterator[Transcript | AudioError]:
        """Yield, in input order, a Transcript or the AudioError of each file (decoded as soon as
        its log-probs are ready, so only transcripts wait for their turn; a long file segment by
        segment as its windows are done: :meth:`decode_stream`)."""
        paths = [p if isinstance(p, Segment) else str(p) for p in paths]

        def long_file(path: str, frames: Iterator[tuple[int, torch.Tensor]], duration: float) -> Transcript:
            return self.decode_stream(path, frames, duration, words)

        def decoded() -> Iterator[tuple[int, Transcript | AudioError]]:
            for i, result in self._emissions(paths, batch_seconds, progress, long_file):
                yield i, result if isinstance(result, (AudioError, Transcript)) else self.decode(result, words)

        yield from _in_order(decoded())

    def transcribe(self, audio: str | os.PathLike | Sequence[str | os.PathLike],
                   batch_seconds: float = DEFAULT_BATCH_SECONDS, words: bool = False) -> Transcript | list[Transcript]:
        """One path -> one Transcript; a list of paths -> a list. Raises AudioError on an unreadable file."""
        single = isinstance(audio, (str, os.PathLike))
        out = []
        for result in self.transcribe_files([audio] if single else audio, batch_seconds, words):
            if isinstance(result, AudioError):
                raise result
            out.append(result)
        return out[0] if single else out


def _in_order(results: Iterable[tuple[int, object]]) -> Iterator:
    """(index, item) pairs in any order -> the items in index order, each as soon as its turn comes."""
    waiting, next_out = {}, 0
    for i, item in results:
        waiting[i] = item
        while next_out in waiting:
            yield waiting.pop(next_out)
            next_out += 1
    for i in sorted(waiting):
        yield waiting[i]


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


def load(path: str | os.PathLike, device: str | torch.device | None = "auto",
         options: DecodeOptions | None = None, backend: str | None = None, threads: int | None = None) -> Recognizer:
    """Load a training checkpoint, or a TorchScript (.ts) or ONNX (.onnx) export of one, float32 or
    int8, for transcription (with its tuned decoding options, if any). ``backend``: "torch" or
    "onnxruntime" (default: the file's own); ``threads``: CPU threads for the model."""
    return Recognizer.load(path, device, options, backend=backend, threads=threads)


def expand_paths(inputs: Iterable[str | os.PathLike], extensions: Sequence[str]) -> list[Path]:
    """Files as given; folders searched recursively for files with one of ``extensions``."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in extensions and p.is_file()))
        else:
            out.append(item)
    return out
