"""N-gram language models from text: sentences -> a Kneser-Ney estimate -> an ARPA file (:mod:`asr.decoding.arpa`).

In: sentences of text (normalized here with a :class:`~asr.text.TextNormalizer`), from text files,
manifests or LibriSpeech-layout folders (:func:`read_texts`). Out: an :class:`~asr.decoding.arpa.NgramModel`
written as a tab-separated ARPA file (:func:`build_arpa`).

The estimate is interpolated modified Kneser-Ney (Chen & Goodman 1998) as KenLM's ``lmplz`` makes
it, without pruning: continuation counts below the highest order, three discounts per order from
the counts of counts, the unigrams interpolated with the uniform distribution (which gives
``<unk>`` its probability). It is plain Python: fine for the transcripts of a corpus (millions of
words); for a web-scale text use KenLM's ``lmplz`` and load its ARPA or binary file as it is.

Two units: ``word`` (words are the LM's tokens; the decoder needs a lexicon, made from the LM's
own vocabulary) and ``char`` (each character is a token and ``|`` the space between words: the
decoder's lexicon-free mode scores every emitted symbol with it).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from asr.decoding.arpa import (
    NEVER_LOG10,
    SENTENCE_END,
    SENTENCE_START,
    UNKNOWN,
    WORD_BOUNDARY,
    LMError,
    Ngram,
    NgramModel,
    open_text,
    write_arpa,
)
from asr.text import TextNormalizer

UNITS = ("word", "char")
DEFAULT_ORDER = {"word": 3, "char": 6}  # n-gram order when none is given
# Discounts used for an order whose counts of counts cannot give the Chen & Goodman estimate
# (tiny corpora: no n-gram seen exactly once, twice, ...). Each stays below the count it discounts.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def lm_tokens(normalized: str, unit: str) -> list[str]:
    """A normalized sentence -> the LM's tokens: its words, or its characters with ``|`` between words."""
    words = normalized.split()
    if unit == "word":
        return words
    return list(f" {WORD_BOUNDARY} ".join(" ".join(w) for w in words).split())


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Raw counts of every n-gram up to ``order`` ending at a predicted token (``<s>`` padded,
    ``</s>`` appended). Index ``n - 1`` holds the n-grams."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [SENTENCE_START, *sentence, SENTENCE_END]
        for i in range(1, len(tokens)):
            for n in range(1, min(order, i + 1) + 1):
                counts[n - 1][tuple(tokens[i - n + 1 : i + 1])] += 1
    return counts


def adjusted_counts(raw: list[Counter]) -> list[Counter]:
    """Kneser-Ney counts: raw at the highest order and for n-grams that start with ``<s>``; below,
    the number of distinct words seen to the left of the n-gram (its continuation count)."""
    adjusted = [Counter() for _ in raw]
    adjusted[-1] = Counter(raw[-1])
    for n in range(len(raw) - 1):
        left = Counter(g[1:] for g in raw[n + 1])
        adjusted[n] = Counter({g: c if g[0] == SENTENCE_START else left[g] for g, c in raw[n].items()})
    return adjusted


def discounts(counts: Counter) -> tuple[float, float, float]:
    """(D1, D2, D3+) of one order from its counts of counts (Chen & Goodman's estimate)."""
    t = Counter(min(c, 4) for c in counts.values())
    if all(t[k] > 0 for k in (1, 2, 3, 4)):
        y = t[1] / (t[1] + 2 * t[2])
        d = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
        if all(0 < dk < k for dk, k in zip(d, (1, 2, 3))):
            return d  # type: ignore[return-value]
    return FALLBACK_DISCOUNTS




def kneser_ney(sentences: Iterable[Sequence[str]], order: int) -> NgramModel:
    """Interpolated modified Kneser-Ney estimate of token sentences (see the module docstring)."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    adjusted = adjusted_counts(count_ngrams(sentences, order))
    if not adjusted[0]:
        raise LMError("no text to build a language model from")
    vocab_size = len({g[0] for g in adjusted[0]} | {UNKNOWN})  # <s> is never predicted, never counted
    probs: list[dict[Ngram, float]] = []
    gammas: list[dict[Ngram, float]] = []
    for n, counts in enumerate(adjusted, 1):
        d = discounts(counts)
        totals: dict[Ngram, float] = defaultdict(float)
        mass: dict[Ngram, float] = defaultdict(float)
        for g, c in counts.items():
            totals[g[:-1]] += c
            mass[g[:-1]] += d[min(c, 3) - 1]
        gamma = {h: mass[h] / totals[h] for h in totals}
        level = {}
        for g, c in counts.items():
            lower = probs[-1][g[1:]] if n > 1 else 1.0 / vocab_size
            level[g] = (c - d[min(c, 3) - 1]) / totals[g[:-1]] + gamma[g[:-1]] * lower
        probs.append(level)
        gammas.append(gamma)
    if (UNKNOWN,) not in probs[0]:
        probs[0][(UNKNOWN,)] = gammas[0][()] / vocab_size
    return _as_arpa(probs, gammas)


def _as_arpa(probs: list[dict[Ngram, float]], gammas: list[dict[Ngram, float]]) -> NgramModel:
    """Interpolated probabilities + interpolation weights -> ARPA entries (the weights are the back-offs)."""
    orders = []
    for n, level in enumerate(probs):
        contexts = gammas[n + 1] if n + 1 < len(gammas) else {}
        entries = {g: (math.log10(p), math.log10(contexts[g]) if g in contexts else 0.0) for g, p in level.items()}
        if n == 0:
            start = (SENTENCE_START,)
            entries[start] = (NEVER_LOG10, math.log10(contexts[start]) if start in contexts else 0.0)
        orders.append(entries)
    return NgramModel(orders)



def read_texts(paths: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Sentences from text files (one per line), JSON-lines manifests (``.jsonl``: each ``text``) and
    LibriSpeech-layout folders (each ``*.trans.txt`` line after its utterance id)."""
    from asr.data.manifest import ManifestError, read_manifest

    for path in map(Path, paths):
        if path.is_dir():
            transcripts = sorted(path.rglob("*.trans.txt"))
            if not transcripts:
                raise LMError(f"{path}: no *.trans.txt transcripts in this folder; give text files or manifests")
            for trans in transcripts:
                yield from (line.partition(" ")[2] for line in trans.read_text(encoding="utf-8").splitlines())
            continue
        if path.suffix == ".jsonl":
            try:
                yield from (u.text for u in read_manifest(path))
            except ManifestError as err:
                raise LMError(str(err)) from None
            continue
        if not path.is_file():
            raise LMError(f"{path}: text file not found")
        with open_text(path) as f:
            yield from f


def build_arpa(texts: Iterable[str], path: str | os.PathLike, order: int | None = None, unit: str = "word",
               normalizer: TextNormalizer | None = None) -> NgramModel:
    """Normalize ``texts`` (one sentence each), estimate a Kneser-Ney model and write it to ``path``."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    normalizer = normalizer or TextNormalizer()
    sentences = [tokens for tokens in (lm_tokens(normalizer(t), unit) for t in texts) if tokens]
    if not sentences:
        raise LMError(f"{path}: the text is empty after normalization; nothing to build a language model from")
    model = kneser_ney(sentences, order or DEFAULT_ORDER[unit])
    write_arpa(model, path)
    return model

