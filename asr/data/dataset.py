"""Dataset: utterances -> (waveform, token ids) examples, read in DataLoader workers.

``prepare_utterances`` screens a manifest once, before training, and reports what it leaves out:
transcripts with characters the tokenizer cannot spell, durations outside the allowed range, and
utterances too short for CTC to emit their transcript (the "inf loss" of peer toolkits).
``AudioDataset`` then decodes and resamples each file when asked; a file that fails to decode
becomes a :class:`Skipped` item that the collate function drops and the training loop counts,
so one corrupt file never stops a run.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import Dataset

from asr.audio import AudioError, load_audio
from asr.data.manifest import Utterance
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

# Speed perturbation resamples to sample_rate / speed, rounded to this many Hz so the rates keep a
# large common divisor: torchaudio's resampling kernel grows with rate / gcd (16000 -> 14545 Hz
# would need a kernel 100x larger than 16000 -> 14500 Hz). The speed error stays under 0.7%.
_SPEED_RATE_STEP = 100


def perturbed_rate(sample_rate: int, speeds: Sequence[float]) -> int:
    """The rate to resample an item to: ``sample_rate / speed`` for a speed drawn from ``speeds``
    (torch's generator: seeded per DataLoader worker), so that read as ``sample_rate`` the audio
    plays ``speed`` times faster; ``sample_rate`` itself without speed perturbation."""
    if len(speeds) <= 1:
        return sample_rate
    speed = speeds[int(torch.randint(len(speeds), ()))]
    return round(sample_rate / speed / _SPEED_RATE_STEP) * _SPEED_RATE_STEP


@dataclass(frozen=True)
class Example:
    """One decoded utterance."""

    index: int  # position in the dataset
    waveform: torch.Tensor  # (samples,) float32 at the dataset's sample rate
    tokens: torch.Tensor  # (target_length,) int64 token ids
    text: str  # normalized transcript


@dataclass
class Skipped:
    """An utterance whose audio could not be read."""

    index: int
    path: str
    reason: str


@dataclass
class ScreenReport:
    """What ``prepare_utterances`` left out, by reason, with a few examples each."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, example: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(example)

    def summary(self, name: str) -> str:
        parts = [f"{name}: {self.kept} utterances kept"]
        for reason, count in self.dropped.most_common():
            parts.append(f"{count} left out ({reason}; e.g. {'; '.join(self.examples[reason])})")
        return ", ".join(parts)


def ctc_min_frames(tokens: Sequence[int]) -> int:
    """The fewest output frames CTC needs to emit ``tokens``: one per token plus a blank between repeats."""
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    return len(tokens) + repeats


def prepare_utterances(
    utterances: Sequence[Utterance],
    tokenizer: CharTokenizer,
    min_duration: float = 0.0,
    max_duration: float = float("inf"),
    output_frame_rate: float | None = None,
    name: str = "data",
) -> tuple[list[Utterance], ScreenReport]:
    """Keep the utterances a CTC model can be trained on; log one summary line of the rest.

    Args:
        min_duration, max_duration: allowed duration range in seconds.
        output_frame_rate: the model's output frames per second of audio; when given, utterances
            whose transcript needs more CTC frames than the audio yields are left out.
    """
    report = ScreenReport()
    kept = []
    for utt in utterances:
        text = tokenizer.normalize(utt.text)
        unknown = tokenizer.unknown(text)
        if unknown:
            report.drop(f"characters {''.join(sorted(unknown))!r} not in the alphabet", utt.id)
        elif not min_duration <= utt.duration <= max_duration:
            report.drop(f"duration outside [{min_duration}, {max_duration}] s", f"{utt.id} {utt.duration:.1f} s")
        elif output_frame_rate and ctc_min_frames(tokenizer.encode(text)) > int(utt.duration * output_frame_rate):
            report.drop("transcript too long for the audio's CTC frames", utt.id)
        else:
            kept.append(utt)
    report.kept = len(kept)
    (log.warning if report.dropped else log.info)(report.summary(name))
    return kept, report


class AudioDataset(Dataset):
    """``utterances[i]`` -> :class:`Example` (or :class:`Skipped` if its audio cannot be read).

    Args:
        utterances: screened utterances (see ``prepare_utterances``).
        tokenizer: normalizes and encodes transcripts.
        sample_rate: waveforms are resampled to this rate (Hz).
        speeds: speed-perturbation factors drawn uniformly per item (1.0 = none), e.g. (0.9, 1.0, 1.1):
            the waveform is resampled so it plays ``factor`` times faster, changing tempo and pitch.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: CharTokenizer,
        sample_rate: int,
        speeds: Sequence[float] = (1.0,),
    ) -> None:
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.speeds = tuple(speeds)

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def __getitem__(self, index: int) -> Example | Skipped:
        utt = self.utterances[index]
        try:
            waveform = load_audio(utt.source, perturbed_rate(self.sample_rate, self.speeds))
        except AudioError as err:
            return Skipped(index, err.path, err.reason)
        text = self.tokenizer.normalize(utt.text)
        tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        return Example(index, waveform, tokens, text)
