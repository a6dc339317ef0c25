"""Metrics: hypothesis and reference texts -> word and character error rates, with jiwer.

``ErrorCounts`` keeps the raw edit counts (substitutions, deletions, insertions, hits) so rates
over a corpus are summed edits over summed reference length, never a mean of per-utterance
rates. ``ErrorRate`` is the torchmetrics wrapper whose states are summed across DDP ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jiwer
import torch
from torchmetrics import Metric


@dataclass
class ErrorCounts:
    """Edit counts between hypotheses and references."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_length(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def rate(self) -> float:
        """Errors per reference unit (0 for an empty reference set with no insertions)."""
        if self.reference_length == 0:
            return float(self.errors > 0)
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.hits + other.hits)


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Word-level edit counts, summed over the pairs."""
    return _counts(references, hypotheses, jiwer.process_words)


def char_errors(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    """Character-level edit counts (spaces included), summed over the pairs."""
    return _counts(references, hypotheses, jiwer.process_characters)


def _counts(references: Sequence[str], hypotheses: Sequence[str], process) -> ErrorCounts:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts()
    for ref, hyp in zip(references, hypotheses):
        # jiwer rejects empty references; an empty reference makes every hypothesis word an insertion.
        if not ref.strip():
            n = len(hyp.split()) if process is jiwer.process_words else len(hyp)
            total = total + ErrorCounts(insertions=n)
            continue
        out = process(ref, hyp)
        total = total + ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)
    return total


class ErrorRate(Metric):
    """Corpus WER (``unit="word"``) or CER (``unit="char"``): summed edits / summed reference length,
    with both sums reduced across DDP ranks."""

    full_state_update = False

    def __init__(self, unit: str = "word") -> None:
        super().__init__()
        if unit not in ("word", "char"):
            raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
        self.count = word_errors if unit == "word" else char_errors
        self.add_state("errors", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, references: Sequence[str], hypotheses: Sequence[str]) -> None:
        counts = self.count(references, hypotheses)
        self.errors += counts.errors
        self.total += counts.reference_length

    def compute(self) -> torch.Tensor:
        return self.errors.float() / self.total.clamp(min=1).float()
