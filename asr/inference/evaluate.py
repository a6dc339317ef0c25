"""Evaluation: a checkpoint + test sets -> WER/CER reports, one per decoder, side by side.

A test set is a JSON-lines manifest, a LibriSpeech-layout folder, or a folder of audio files with
``.txt`` transcripts beside them (``load_test_set``). The model runs once per set; its log-probs
are decoded by every decoder asked for (greedy, beam, beam + LM ...), and each decoder's
hypotheses are scored after the model's own text normalization:

- corpus WER and CER (summed edits / summed reference length) with substitutions, deletions and
  insertions;
- WER per speaker (from the manifest's ``speaker``);
- the most frequent substitution pairs (reference word -> hypothesis word);
- the worst utterances (most word errors).

``report_dict`` gives it all as JSON-ready data; ``write_utterances`` the per-utterance results.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import jiwer
from tqdm import tqdm

from asr.audio import AudioError
from asr.data.manifest import Utterance, from_audio_folder, from_librispeech, read_manifest
from asr.decoding.greedy import Decoder
from asr.files import atomic_write
from asr.inference.recognizer import DEFAULT_BATCH_SECONDS, Recognizer
from asr.metrics import ErrorCounts, char_errors

TOP_SUBSTITUTIONS = 10  # substitution pairs kept in a report
TOP_UTTERANCES = 10  # worst utterances kept in a report
NO_SPEAKER = "-"  # speaker of utterances whose manifest names none


@dataclass
class UtteranceResult:
    id: str
    audio: str
    speaker: str
    reference: str  # normalized
    hypothesis: str
    word_errors: int
    reference_words: int


@dataclass
class DecoderReport:
    """One decoder's results on one test set."""

    decoder: str
    words: ErrorCounts = field(default_factory=ErrorCounts)
    chars: ErrorCounts = field(default_factory=ErrorCounts)
    speakers: dict[str, ErrorCounts] = field(default_factory=dict)
    substitutions: Counter = field(default_factory=Counter)  # (reference word, hypothesis word) -> count
    utterances: list[UtteranceResult] = field(default_factory=list)

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def add(self, utt: Utterance, reference: str, hypothesis: str) -> None:
        words, subs = word_details(reference, hypothesis)
        self.words = self.words + words
        self.chars = self.chars + char_errors([reference], [hypothesis])
        speaker = utt.speaker or NO_SPEAKER
        self.speakers[speaker] = self.speakers.get(speaker, ErrorCounts()) + words
        self.substitutions.update(subs)
        self.utterances.append(UtteranceResult(utt.id, utt.audio, speaker, reference, hypothesis,
                                               words.errors, words.reference_length))

    def worst(self, n: int = TOP_UTTERANCES) -> list[UtteranceResult]:
        """The ``n`` utterances with the most word errors (ties: the higher error rate first)."""
        key = lambda u: (u.word_errors, u.word_errors / max(1, u.reference_words))  # noqa: E731
        return sorted((u for u in self.utterances if u.word_errors), key=key, reverse=True)[:n]


@dataclass
class EvalReport:
    """Results of one test set: one DecoderReport per decoder, in the order asked."""

    name: str
    decoders: dict[str, DecoderReport] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (audio path, reason) of unreadable files

    @property
    def first(self) -> DecoderReport:
        return next(iter(self.decoders.values()))

    # The first decoder's numbers, for callers that use one decoder.
    @property
    def words(self) -> ErrorCounts:
        return self.first.words

    @property
    def chars(self) -> ErrorCounts:
        return self.first.chars

    @property
    def utterances(self) -> list[UtteranceResult]:
        return self.first.utterances

    @property
    def wer(self) -> float:
        return self.first.wer

    @property
    def cer(self) -> float:
        return self.first.cer


def word_details(reference: str, hypothesis: str) -> tuple[ErrorCounts, Counter]:
    """Word edit counts of one pair and its substitution pairs."""
    if not reference.strip():  # jiwer rejects empty references: every hypothesis word is inserted
        return ErrorCounts(insertions=len(hypothesis.split())), Counter()
    out = jiwer.process_words(reference, hypothesis)
    ref, hyp = out.references[0], out.hypotheses[0]
    pairs = Counter()
    for chunk in out.alignments[0]:
        if chunk.type == "substitute":  # a run of substitutions: pair the words one by one
            pairs.update(zip(ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits), pairs


def load_test_set(path: str | os.PathLike) -> list[Utterance]:
    """A manifest file, a LibriSpeech-layout folder, or a folder of audio + .txt files -> utterances."""
    path = Path(path)
    if path.is_file():
        return read_manifest(path)
    if path.is_dir() and next(path.rglob("*.trans.txt"), None) is not None:
        return from_librispeech(path)[0]
    return from_audio_folder(path)[0]


def evaluate(recognizer: Recognizer, utterances: Sequence[Utterance], name: str = "test",
             batch_seconds: float = DEFAULT_BATCH_SECONDS, progress: bool = True,
             decoders: Mapping[str, Decoder] | None = None) -> EvalReport:
    """Run the model over every utterance once and score each decoder's transcripts.

    ``decoders`` maps a column name to a decoder (default: the recognizer's own, as "decoder").
    Unreadable files are listed in ``report.failed`` and count as fully deleted.
    """
    decoders = dict(decoders or {"decoder": recognizer.decoder})
    report = EvalReport(name, {k: DecoderReport(k) for k in decoders})
    results = recognizer.emissions([u.source for u in utterances], batch_seconds)
    for utt, result in tqdm(zip(utterances, results), total=len(utterances), desc=f"evaluating {name}",
                            unit="utt", disable=None if progress else True, leave=False):
        reference = recognizer.tokenizer.normalize(utt.text)
        if isinstance(result, AudioError):
            report.failed.append((result.path, result.reason))
        for key, decoder in decoders.items():
            hypothesis = "" if isinstance(result, AudioError) else recognizer.decode(result, decoder=decoder).text
            report.decoders[key].add(utt, reference, hypothesis)
    return report


def _counts(c: ErrorCounts) -> dict[str, Any]:
    return {"rate": c.rate, "substitutions": c.substitutions, "deletions": c.deletions,
            "insertions": c.insertions, "reference_length": c.reference_length}


def report_dict(report: EvalReport, top: int = TOP_SUBSTITUTIONS) -> dict[str, Any]:
    """A test set's report as JSON-ready data."""
    decoders = {}
    for key, d in report.decoders.items():
        decoders[key] = {
            "wer": d.wer, "cer": d.cer, "words": _counts(d.words), "chars": _counts(d.chars),
            "speakers": {s: _counts(c) for s, c in sorted(d.speakers.items())},
            "substitutions": [{"reference": r, "hypothesis": h, "count": n}
                              for (r, h), n in d.substitutions.most_common(top)],
            "worst_utterances": [asdict(u) for u in d.worst(top)],
        }
    return {"set": report.name, "utterances": len(report.utterances),
            "failed": [{"audio": a, "reason": r} for a, r in report.failed], "decoders": decoders}


def write_report(reports: Sequence[EvalReport], path: str | os.PathLike, **meta: Any) -> Path:
    """All test sets' reports as one JSON file, written atomically."""
    with atomic_write(path) as f:
        json.dump({**meta, "sets": [report_dict(r) for r in reports]}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return Path(path)


def write_utterances(report: EvalReport, path: str | os.PathLike) -> Path:
    """One JSON line per utterance: id, audio, speaker, reference, and the first decoder's
    hypothesis, word_errors and reference_words; with several decoders, each one's under "decoders"."""
    per_decoder = [d.utterances for d in report.decoders.values()]
    with atomic_write(path) as f:
        for i, row in enumerate(report.utterances):
            out = asdict(row)
            if len(per_decoder) > 1:
                out["decoders"] = {k: {"hypothesis": d.utterances[i].hypothesis,
                                       "word_errors": d.utterances[i].word_errors}
                                   for k, d in report.decoders.items()}
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    return Path(path)
