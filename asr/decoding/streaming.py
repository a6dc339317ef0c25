"""Streaming decoding: CTC log-probs arriving in order -> the tokens that can no longer change, and a
provisional tail.

In: per call, ``(frames, vocab)`` log-probs of the next final frames, and optionally the look-ahead
frames after them (provisional). Out: a :class:`StreamStep`: committed tokens with their frames (a
:class:`~asr.decoding.greedy.Hypothesis` of what is new, never taken back) and the partial
hypothesis after them (replaced at every call). :meth:`finish` commits the rest.

- :class:`GreedyStream`: a frame's best symbol never changes, so every final frame commits; the
  previous frame's symbol is carried across calls (a repeat across a call boundary is one symbol).
- :class:`BeamStream`: flashlight's beam search stepped frame by frame (``decode_step``). What every
  hypothesis in the beam agrees on (tokens, and words for a lexicon search) is committed and the
  search's history up to there is pruned, which changes nothing: every hypothesis descends from it.
  If the beam has not agreed for ``max_pending`` frames, the best hypothesis's ancestor that far back
  is committed and the others are dropped (memory stays bounded; the result may then differ from
  decoding the frames in one call).

Fed the same frames, both give what the offline decoders give in one call (:class:`GreedyDecoder`,
:class:`~asr.decoding.beam.BeamDecoder`), in whatever pieces the frames come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from asr.decoding.beam import IMPOSSIBLE, BeamDecoder
from asr.decoding.greedy import Hypothesis

MAX_PENDING_FRAMES = 600  # frames the beam may go without agreeing before its best path is committed (~20 s)


@dataclass
class StreamStep:
    """New committed tokens (never revised) and the provisional hypothesis that follows them."""

    committed: Hypothesis = field(default_factory=lambda: Hypothesis([]))
    partial: Hypothesis = field(default_factory=lambda: Hypothesis([]))


class StreamDecoder(Protocol):
    def step(self, log_probs: torch.Tensor, lookahead: torch.Tensor | None = None) -> StreamStep: ...

    def finish(self) -> StreamStep: ...


def _collapse(ids: list[int], previous: int, first_frame: int, blank: int) -> tuple[list[int], list[int]]:
    """CTC collapse of per-frame symbols (frame ``first_frame + i``), ``previous`` the symbol before them."""
    tokens, frames = [], []
    for i, s in enumerate(ids):
        if s != blank and s != previous:
            tokens.append(s)
            frames.append(first_frame + i)
        previous = s
    return tokens, frames


class GreedyStream:
    """Greedy CTC over frames in order (see the module docstring)."""

    def __init__(self, blank: int = 0) -> None:
        self.blank, self.previous, self.frame = blank, blank, 0

    def step(self, log_probs: torch.Tensor, lookahead: torch.Tensor | None = None) -> StreamStep:
        ids = log_probs.argmax(-1).tolist()
        tokens, frames = _collapse(ids, self.previous, self.frame, self.blank)
        self.frame += len(ids)
        self.previous = ids[-1] if ids else self.previous
        partial = Hypothesis([])
        if lookahead is not None and len(lookahead):
            partial = Hypothesis(*_collapse(lookahead.argmax(-1).tolist(), self.previous, self.frame, self.blank))
        return StreamStep(Hypothesis(tokens, frames), partial)

    def finish(self) -> StreamStep:
        return StreamStep()


class BeamStream:
    """A :class:`~asr.decoding.beam.BeamDecoder`'s search over a stream (see the module docstring).

    Args:
        decoder: the offline decoder whose options, LM and lexicon the stream uses (shared, read only).
        max_pending: frames without agreement before the best path is committed.
    """

    def __init__(self, decoder: BeamDecoder, max_pending: int = MAX_PENDING_FRAMES) -> None:
        self.search = decoder.stream_search()  # this stream's own flashlight decoder
        self.lexicon, self.boundary, self.blank = decoder.uses_lexicon, decoder.boundary, decoder.blank
        self.max_pending, self.vocab = max_pending, len(decoder.tokenizer)
        self.total = 0  # frames searched
        self.done = -1  # the last frame committed
        self.search.decode_begin()

    # The search's buffer: timestep 0 is the state before its first frame, timestep i (1 .. L) is frame
    # total - L + i - 1. Pruning drops the history before a timestep (flashlight may keep more than
    # asked), so positions are recomputed from the buffer's length after every call.

    def _buffer(self) -> tuple[list[Any], int]:
        """The beam's hypotheses, and the frame of their timestep 1."""
        results = self.search.decoder.get_all_final_hypothesis()
        return results, self.total - (len(results[0].tokens) - 1)

    def step(self, log_probs: torch.Tensor, lookahead: torch.Tensor | None = None) -> StreamStep:
        if len(log_probs):
            self.search.decode_step(log_probs.detach().float().cpu().contiguous())
            self.total += len(log_probs)
        if self.total == 0:
            return StreamStep()
        results, base = self._buffer()
        agreed = base + _agreed(results) - 2  # the last frame every hypothesis agrees on
        if agreed < self.total - self.max_pending:  # no agreement for too long: keep the best path
            results, agreed = [max(results, key=lambda r: r.score)], self.total - self.max_pending
        committed = Hypothesis([], words=[] if self.lexicon else None)
        if agreed > self.done:
            committed = self._span(results[0], base, self.done + 1, agreed, agreed)
            self.done = agreed
            self.search.decoder.prune(self.total - 1 - agreed)  # history up to the agreed frame
        results, base = self._buffer()
        best = max(results, key=lambda r: r.score)
        return StreamStep(committed, self._span(best, base, self.done + 1, self.total - 1, self.total - 1))

    def finish(self) -> StreamStep:
        audio_frames = self.total
        if self.lexicon:  # a frame where only the word boundary is possible: the last word ends there
            end = torch.full((1, self.vocab), IMPOSSIBLE)
            end[0, self.boundary] = 0.0
            self.search.decode_step(end)
            self.total += 1
        self.search.decode_end()  # one more timestep: the end state (its word counts, its symbol does not)
        self.total += 1
        results, base = self._buffer()
        best = max(results, key=lambda r: r.score)
        rest = self._span(best, base, self.done + 1, audio_frames - 1, self.total - 1)
        self.done = self.total - 1
        return StreamStep(rest, Hypothesis([]))

    def _span(self, result: Any, base: int, first: int, last: int, last_word: int) -> Hypothesis:
        """The symbols ``result`` emits in frames ``first`` to ``last``, and its words in frames
        ``first`` to ``last_word``."""
        start = first - base + 1
        ids = list(result.tokens[start : last - base + 2])
        tokens, frames = _collapse(ids, result.tokens[start - 1], first, self.blank)
        if not self.lexicon:
            return Hypothesis(tokens, frames, float(result.score))
        words = [self.search.word_dict.get_entry(w) for w in result.words[start : last_word - base + 2] if w >= 0]
        return Hypothesis(tokens, frames, float(result.score), words)


def _agreed(results: list[Any]) -> int:
    """How many leading timesteps every hypothesis shares (symbols and words)."""
    if not results:
        return 0
    first = results[0]
    n = min(len(r.tokens) for r in results)
    for t in range(n):
        if any(r.tokens[t] != first.tokens[t] or r.words[t] != first.words[t] for r in results[1:]):
            return t
    return n
