"""Decoding: CTC log-probabilities -> token id sequences.

Decoders share one call, ``decoder(log_probs, lengths) -> list[Hypothesis]``, with
``log_probs`` of shape ``(batch, frames, vocab)`` and ``lengths`` of shape ``(batch,)``, so the
greedy decoder and a beam-search decoder can replace each other anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Hypothesis:
    """One decoded utterance."""

    tokens: list[int]  # token ids, blanks and repeats removed
    frames: list[int] = field(default_factory=list)  # output frame at which each token was emitted
    score: float = 0.0  # log-probability of the path (greedy) or the beam's total score


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
