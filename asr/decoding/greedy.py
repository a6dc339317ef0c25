"""Greedy decoding: CTC log-probabilities -> token id sequences, and what every decoder returns.

Decoders share one call, ``decoder(log_probs, lengths) -> list[Hypothesis]``, with
``log_probs`` of shape ``(batch, frames, vocab)`` and ``lengths`` of shape ``(batch,)``, so the
greedy decoder and the beam-search decoder (:mod:`asr.decoding.beam`) can replace each other anywhere.
:func:`hypothesis_text` turns a hypothesis into normalized text; :func:`split_at_pauses` ends a word
at a long pause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from asr.text import CharTokenizer


@dataclass
class Hypothesis:
    """One decoded utterance."""

    tokens: list[int]  # token ids, blanks and repeats removed
    frames: list[int] = field(default_factory=list)  # output frame at which each token was emitted
    score: float = 0.0  # log-probability of the path (greedy) or the beam's total score
    words: list[str] | None = None  # the lexicon's words (lexicon search); None: read the words off the tokens


class Decoder(Protocol):
    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]: ...


class GreedyDecoder:
    """Best path: the most likely symbol per frame, repeats collapsed, blanks removed.

    Runs batched on the log-probs' device and copies only the kept symbols to the host.
    """

    def __init__(self, blank: int = 0) -> None:
        self.blank = blank

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        best, ids = log_probs.max(dim=-1)  # (batch, frames)
        valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None].to(ids.device)
        changed = torch.ones_like(valid)
        changed[:, 1:] = ids[:, 1:] != ids[:, :-1]
        keep = valid & changed & (ids != self.blank)
        scores = (best * valid).sum(-1).tolist()
        ids, keep = ids.cpu(), keep.cpu()
        hyps = []
        for b in range(ids.shape[0]):
            frames = keep[b].nonzero().squeeze(-1)
            hyps.append(Hypothesis(ids[b, frames].tolist(), frames.tolist(), scores[b]))
        return hyps


def split_at_pauses(hyp: Hypothesis, space: int, min_gap: int) -> Hypothesis:
    """Insert a space between consecutive non-space symbols emitted ``min_gap`` or more frames apart
    (``min_gap`` < 1: unchanged). Lexicon hypotheses already have their words: unchanged."""
    if min_gap < 1 or hyp.words is not None or len(hyp.tokens) < 2:
        return hyp
    tokens, frames = [hyp.tokens[0]], [hyp.frames[0]]
    for tok, frame in zip(hyp.tokens[1:], hyp.frames[1:]):
        if frame - frames[-1] >= min_gap and tok != space and tokens[-1] != space:
            tokens.append(space)
            frames.append((frame + frames[-1]) // 2)
        tokens.append(tok)
        frames.append(frame)
    return Hypothesis(tokens, frames, hyp.score, None)


def hypothesis_text(hyp: Hypothesis, tokenizer: CharTokenizer) -> str:
    """The normalized text of a hypothesis: its lexicon words, or its tokens."""
    if hyp.words is not None:
        return tokenizer.normalize(" ".join(hyp.words))
    return tokenizer.decode(hyp.tokens)

