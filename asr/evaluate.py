"""Evaluation: a checkpoint + a test set -> corpus WER/CER, edit counts and per-utterance results.

A test set is a JSON-lines manifest, a LibriSpeech-layout folder, or a folder of audio files with
``.txt`` transcripts beside them (``load_test_set``). References and hypotheses are compared
after the model's own text normalization.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from asr.audio import AudioError
from asr.data.manifest import Utterance, from_audio_folder, from_librispeech, read_manifest
from asr.files import atomic_write
from asr.metrics import ErrorCounts, char_errors, word_errors
from asr.transcribe import DEFAULT_BATCH_SECONDS, Recognizer


@dataclass
class UtteranceResult:
    id: str
    audio: str
    reference: str  # normalized
    hypothesis: str
    word_errors: int
    reference_words: int


@dataclass
class EvalReport:
    """Results of one test set."""

    name: str
    words: ErrorCounts = field(default_factory=ErrorCounts)
    chars: ErrorCounts = field(default_factory=ErrorCounts)
    utterances: list[UtteranceResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (audio path, reason) of unreadable files

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate


def load_test_set(path: str | os.PathLike) -> list[Utterance]:
    """A manifest file, a LibriSpeech-layout folder, or a folder of audio + .txt files -> utterances."""
    path = Path(path)
    if path.is_file():
        return read_manifest(path)
    if path.is_dir() and next(path.rglob("*.trans.txt"), None) is not None:
        return from_librispeech(path)[0]
    return from_audio_folder(path)[0]


def evaluate(recognizer: Recognizer, utterances: Sequence[Utterance], name: str = "test",
             batch_seconds: float = DEFAULT_BATCH_SECONDS, progress: bool = True) -> EvalReport:
    """Transcribe every utterance and score it; unreadable files are listed in ``report.failed``
    and count as fully deleted (their reference words are errors)."""
    report = EvalReport(name)
    results = recognizer.transcribe_files([u.audio for u in utterances], batch_seconds)
    for utt, result in tqdm(zip(utterances, results), total=len(utterances), desc=f"evaluating {name}",
                            unit="utt", disable=not progress, leave=False):
        reference = recognizer.tokenizer.normalize(utt.text)
        if isinstance(result, AudioError):
            report.failed.append((result.path, result.reason))
            hypothesis = ""
        else:
            hypothesis = result.text
        words = word_errors([reference], [hypothesis])
        report.words = report.words + words
        report.chars = report.chars + char_errors([reference], [hypothesis])
        report.utterances.append(UtteranceResult(utt.id, utt.audio, reference, hypothesis,
                                                 words.errors, words.reference_length))
    return report


def write_utterances(report: EvalReport, path: str | os.PathLike) -> Path:
    """One JSON line per utterance: id, audio, reference, hypothesis, word_errors, reference_words."""
    with atomic_write(path) as f:
        for row in report.utterances:
            f.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    return Path(path)
