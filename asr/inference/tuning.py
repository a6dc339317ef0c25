"""LM weight tuning: a dev set's log-probs (computed once, cached) + an n-gram LM -> the LM weight and
word bonus with the lowest WER, stored beside the checkpoint for ``asr.load`` and ``decode.py``.

The model runs once over the dev set; its log-probs are saved to a cache file keyed by the
checkpoint (path, size, modification time) and the utterance ids, so a second tuning run (another
grid, another LM) starts decoding at once. Every (lm_weight, word_score) pair of the grid is then
decoded with beam search, reusing the loaded LM (:meth:`BeamDecoder.with_weights`); while the best
point lies on the grid's edge, the grid grows past it around that point (:func:`search`).

The grid always holds the greedy-equivalent point, ``GREEDY_POINT`` = (lm_weight 0, word_score 0):
the LM and the word bonus are off and the beam's best path is greedy's, exactly with a character
LM (lexicon-free search), and with a word LM whenever greedy's words are all in the lexicon (else
the closest path that spells lexicon words). ``tune_lm.py`` compares the best point with greedy
decoding itself (:class:`Tuning`); a result that does not beat greedy is not worth storing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from asr.audio import AudioError
from asr.data.manifest import Utterance
from asr.decoding.beam import BeamDecoder
from asr.decoding.options import DecodeOptions
from asr.inference.recognizer import DEFAULT_BATCH_SECONDS, Emission, Recognizer
from asr.metrics import word_errors

# The grid of LM weights (alpha) and word bonuses (beta). Its far ends are for weak acoustic models:
# models trained on Mini LibriSpeech (greedy WER 73-75 % on unseen speakers) chose lm_weight 2 and
# word_score -1, the corners of a grid that stopped there, and lm_weight 2-3 / word_score -1 to -2 in
# this one (recipes/mini_librispeech/README.md), still on its edge: so the search grows past an edge
# that holds the best point (DEFAULT_EXTENSIONS).
DEFAULT_LM_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_SCORES = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
DEFAULT_EXTENSIONS = 3  # times the grid may grow past an edge that holds the best point (search)
GREEDY_POINT = (0.0, 0.0)  # (lm_weight, word_score) at which beam search gives greedy's path; always tried
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Trial:
    lm_weight: float
    word_score: float
    wer: float
    errors: int


@dataclass
class DevSet:
    """The dev utterances that could be read, their normalized references and log-probs."""

    ids: list[str]
    references: list[str]
    emissions: list[Emission]
    failed: list[str]  # "path: reason" of unreadable files, left out


def _cache_key(checkpoint: Path, utterances: Sequence[Utterance]) -> dict:
    stat = checkpoint.stat()
    return {"format": CACHE_FORMAT, "checkpoint": str(checkpoint.resolve()), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "ids": [u.id for u in utterances]}


def dev_set(recognizer: Recognizer, utterances: Sequence[Utterance], checkpoint: str | os.PathLike,
            cache: str | os.PathLike | None, batch_seconds: float = DEFAULT_BATCH_SECONDS) -> DevSet:
    """Log-probs of ``utterances`` from ``cache`` if it was made by the same checkpoint for the same
    utterances, else from the model (and then saved to ``cache``)."""
    key = _cache_key(Path(checkpoint), utterances)
    if cache is not None and Path(cache).is_file():
        stored = torch.load(cache, weights_only=True)
        if stored.get("key") == key:
            emissions = [Emission(p, lp, d) for p, lp, d in zip(stored["paths"], stored["log_probs"], stored["durations"])]
            return DevSet(stored["ids"], stored["references"], emissions, stored["failed"])
    ids, refs, emissions, failed = [], [], [], []
    for utt, result in zip(utterances, recognizer.emissions([u.source for u in utterances], batch_seconds)):
        if isinstance(result, AudioError):
            failed.append(str(result))
            continue
        ids.append(utt.id)
        refs.append(recognizer.tokenizer.normalize(utt.text))
        emissions.append(result)
    if cache is not None:
        _save({"key": key, "ids": ids, "references": refs, "failed": failed,
               "paths": [e.path for e in emissions], "log_probs": [e.log_probs for e in emissions],
               "durations": [e.duration for e in emissions]}, Path(cache))
    return DevSet(ids, refs, emissions, failed)


def _save(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def score(recognizer: Recognizer, dev: DevSet, decoder) -> tuple[float, int]:
    """(WER, word errors) of ``decoder`` on the dev set."""
    hyps = [recognizer.decode(e, decoder=decoder).text for e in dev.emissions]
    counts = word_errors(dev.references, hyps)
    return counts.rate, counts.errors


def grid_points(lm_weights: Sequence[float], word_scores: Sequence[float]) -> list[tuple[float, float]]:
    """The (lm_weight, word_score) pairs tried: ``GREEDY_POINT`` first, then the grid (each pair once)."""
    return list(dict.fromkeys([GREEDY_POINT, *((float(w), float(s)) for w in lm_weights for s in word_scores)]))


def search(errors_at: Callable[[float, float], tuple[float, int]], lm_weights: Sequence[float],
           word_scores: Sequence[float], extend: int = DEFAULT_EXTENSIONS,
           on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """``errors_at(lm_weight, word_score) -> (WER, word errors)`` at every point of :func:`grid_points`;
    then, while the best point lies on the grid's edge (its largest LM weight, its smallest or largest
    word score), the axis grows by one value past that edge at the edge's own spacing and the best
    point's untried neighbours in the grown grid are tried, ``extend`` times at most. Trials in the
    order tried. (A weak acoustic model's best weights can lie past any fixed grid: see
    DEFAULT_LM_WEIGHTS; growing only around the best point costs a few decodes, not a row per value.)"""
    weights, scores = sorted({float(w) for w in lm_weights}), sorted({float(s) for s in word_scores})
    trials: dict[tuple[float, float], Trial] = {}

    def run(points: Sequence[tuple[float, float]]) -> None:
        for point in points:
            if point not in trials:
                trials[point] = Trial(*point, *errors_at(*point))
                if on_trial is not None:
                    on_trial(trials[point])

    run(grid_points(weights, scores))
    for _ in range(extend):
        best = best_trial(list(trials.values()))
        grew = False
        if len(weights) > 1 and best.lm_weight == weights[-1]:
            weights.append(2 * weights[-1] - weights[-2])
            grew = True
        if len(scores) > 1 and best.word_score == scores[0]:
            scores.insert(0, 2 * scores[0] - scores[1])
            grew = True
        elif len(scores) > 1 and best.word_score == scores[-1]:
            scores.append(2 * scores[-1] - scores[-2])
            grew = True
        if not grew:
            break
        i = weights.index(best.lm_weight) if best.lm_weight in weights else None
        j = scores.index(best.word_score) if best.word_score in scores else None
        if i is None or j is None:  # the best is greedy's point, off a grid without 0
            break
        run([(weights[a], scores[b]) for a in range(max(i - 1, 0), min(i + 2, len(weights)))
             for b in range(max(j - 1, 0), min(j + 2, len(scores)))])
    return list(trials.values())


def grid_search(recognizer: Recognizer, dev: DevSet, base: DecodeOptions, lm_weights: Sequence[float],
                word_scores: Sequence[float], on_trial: Callable[[Trial], None] | None = None,
                extend: int = DEFAULT_EXTENSIONS) -> list[Trial]:
    """Beam-decode the dev set at the points :func:`search` picks; trials in the order tried."""
    decoder = BeamDecoder(recognizer.tokenizer, base.replace(decoder="beam"))
    return search(lambda lm_weight, word_score: score(recognizer, dev, decoder.with_weights(lm_weight, word_score)),
                  lm_weights, word_scores, extend, on_trial)


def best_trial(trials: Sequence[Trial]) -> Trial:
    """Fewest errors; among ties, the smallest LM weight and word bonus (the least LM-driven)."""
    return min(trials, key=lambda t: (t.errors, t.lm_weight, abs(t.word_score)))


@dataclass
class Tuning:
    """A grid search and what greedy decoding scores on the same dev set."""

    greedy_wer: float
    greedy_errors: int
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        return best_trial(self.trials)

    @property
    def beats_greedy(self) -> bool:
        """Whether the best point makes fewer word errors than greedy (else greedy is the one to use)."""
        return self.best.errors < self.greedy_errors

