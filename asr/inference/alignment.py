"""Word timestamps: CTC log-probs + the decoded text -> words with start/end seconds and a confidence.

The decoded text (from any decoder) is force-aligned to the log-probs: the most likely CTC path
that spells exactly that text (Viterbi over the 2L+1 blank/symbol states, :func:`ctc_viterbi`).
Each character gets the frames of its span on that path; a word starts at the
first frame of its first character and ends after the last frame of its last one, in seconds
(frame / output frame rate, plus the segment's offset). Its confidence is the mean posterior
probability of the aligned symbol over the word's frames (0-1).

CTC emits each character as a short spike, so times are accurate to about a frame or two (30 ms
frames for the small model) around where the model chose to fire, not the acoustic onset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from asr.text import CharTokenizer


@dataclass(frozen=True)
class Word:
    """One word of a transcript, with its time span in the recording."""

    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # mean posterior of the word's aligned frames, 0-1


def _feasible(targets: Sequence[int], frames: int) -> bool:
    """CTC needs a frame per symbol plus a blank between repeated symbols."""
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    return 0 < len(targets) and len(targets) + repeats <= frames


def align_words(log_probs: torch.Tensor, text: str, tokenizer: CharTokenizer, frame_rate: float,
                offset: float = 0.0) -> list[Word]:
    """``(frames, vocab)`` log-probs + their normalized ``text`` -> its words with times and confidences.

    ``frame_rate`` is output frames per second; ``offset`` (seconds) is added to every time, for a
    segment of a longer recording. Characters the tokenizer cannot encode are left out of the
    alignment. If the text cannot be aligned with its spaces (too few frames), it is aligned
    without them; if even that is impossible, the text is spread over the frames evenly.
    """
    words = text.split()
    if not words:
        return []
    ids = [[i for i in tokenizer.encode("".join(c for c in w if not tokenizer.unknown(c)))] for w in words]
    space = tokenizer.encode(" ")[0]
    with_spaces = [t for i, w in enumerate(ids) for t in ([space] if i else []) + w]
    frames = log_probs.shape[0]
    for targets, has_spaces in ((with_spaces, True), ([t for w in ids for t in w], False)):
        if _feasible(targets, frames):
            spans = _char_spans(log_probs, targets, tokenizer.blank)
            if has_spaces:
                spans = [s for s, t in zip(spans, targets) if t != space]
            return _words(words, ids, spans, frame_rate, offset)
    return _even_spread(words, frames, frame_rate, offset)


def ctc_viterbi(log_probs: np.ndarray, targets: Sequence[int], blank: int) -> np.ndarray:
    """The most likely CTC path of ``targets`` through ``(frames, vocab)`` log-probs: for each frame,
    the index of the target it emits, or -1 for a blank.

    ``torchaudio.functional.forced_align`` computes the same thing in C++, but on exact ties between
    predecessor states it takes the worst one (pytorch/audio#4221, open in torchaudio 2.11) and
    returns a sub-optimal path; ties are common here (digital silence gives every non-blank symbol
    the same log-prob), so the recursion is written out. It costs one vector step per frame.
    """
    frames, n = log_probs.shape[0], len(targets)
    labels = np.full(2 * n + 1, blank)
    labels[1::2] = targets
    skip = np.zeros(2 * n + 1, dtype=bool)  # state s may be entered from s - 2 (across a blank)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    emit = log_probs[:, labels]  # (frames, states)
    score = np.full(2 * n + 1, -np.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((frames, 2 * n + 1), dtype=np.int8)  # 0: stay, 1: from s - 1, 2: from s - 2
    for t in range(1, frames):
        from_prev = np.concatenate(([-np.inf], score[:-1]))
        from_skip = np.where(skip, np.concatenate(([-np.inf, -np.inf], score[:-2])), -np.inf)
        choices = np.stack([score, from_prev, from_skip])
        back[t] = choices.argmax(0)
        score = choices.max(0) + emit[t]
    state = 2 * n if n == 0 or score[2 * n] >= score[2 * n - 1] else 2 * n - 1
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = (state - 1) // 2 if state % 2 else -1
        state -= int(back[t, state])
    return path


def _char_spans(log_probs: torch.Tensor, targets: list[int], blank: int) -> list[tuple[int, int, float]]:
    """(start frame, end frame exclusive, mean posterior) of each target symbol on its best CTC path."""
    lp = log_probs.detach().float().cpu().numpy()
    path = ctc_viterbi(lp, targets, blank)
    spans = []
    for k, target in enumerate(targets):
        frames = np.flatnonzero(path == k)
        spans.append((int(frames[0]), int(frames[-1]) + 1, float(np.exp(lp[frames, target]).mean())))
    return spans


def _words(words: list[str], ids: list[list[int]], spans: list[tuple[int, int, float]], frame_rate: float,
           offset: float) -> list[Word]:
    out, k = [], 0
    for word, chars in zip(words, ids):
        own = spans[k : k + len(chars)]
        k += len(chars)
        if not own:  # a word made only of characters the model has no symbol for
            continue
        frames = sum(e - s for s, e, _ in own)
        confidence = sum((e - s) * p for s, e, p in own) / frames
        out.append(Word(word, offset + own[0][0] / frame_rate, offset + own[-1][1] / frame_rate, confidence))
    return out


def _even_spread(words: list[str], frames: int, frame_rate: float, offset: float) -> list[Word]:
    """Fallback for a text longer than its frames allow: words share the time evenly, confidence 0."""
    step = frames / len(words) / frame_rate
    return [Word(w, offset + i * step, offset + (i + 1) * step, 0.0) for i, w in enumerate(words)]
