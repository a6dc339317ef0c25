"""Long recordings: a file of any length -> the log-probs of the whole file, computed window by window.

The file is read in overlapping windows (``asr.audio.load_audio`` with a start and a duration, so
a 2-hour file is never in memory as audio, nor in the model at once). Each window is the span of
output frames it keeps (``chunk`` seconds) plus ``context`` seconds of audio on each side that the
model sees but whose output is dropped: the bidirectional LSTM is given both sides of every kept
frame and no hidden state is carried from one window to the next. Window starts are multiples of
the model's samples per output frame, so local frame ``k`` of a window is exactly frame
``first_frame + k`` of the file; the kept spans tile ``[0, total_frames)`` with no gap and no
overlap, and the merged log-probs have as many frames as the file decoded in one piece. Any
decoder then reads the merged stream as one, so no word is lost or doubled at a seam.

The merged stream is small (frames x vocab floats: 21 MB for two hours at 25 frames/s and 29
symbols). Beam search and alignment read it in segments of at most ``segment`` seconds, cut in the
longest pause (run of blank or space frames) near each limit (:func:`segment_bounds`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import torch

from asr.audio import load_audio

SILENCE_PEAK = 1e-4  # -80 dBFS: a window no louder than this is digital silence and not run through the model
SILENT_LOG_PROB = -1e4  # log-prob of every non-blank symbol in a frame of digital silence


@dataclass(frozen=True)
class WindowConfig:
    """How long recordings are cut (seconds)."""

    chunk: float = 20.0  # output kept per window
    context: float = 4.0  # audio seen on each side of the kept part, output dropped
    segment: float = 30.0  # longest piece of the merged log-probs decoded at once (beam search, alignment)

    def __post_init__(self) -> None:
        if self.chunk <= 0 or self.context < 0 or self.segment <= 0:
            raise ValueError(f"window sizes must be positive (chunk {self.chunk}, context {self.context}, "
                             f"segment {self.segment} seconds)")

    @property
    def window(self) -> float:
        """Longest audio given to the model at once, seconds; shorter files go in whole."""
        return self.chunk + 2 * self.context


class FrameModel(Protocol):
    """What the windowing needs from an acoustic model."""

    samples_per_frame: int  # input samples per output frame
    vocab_size: int

    def output_frames(self, n_samples: int) -> int: ...

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, samples)`` + ``(batch,)`` -> CPU ``(batch, frames, vocab)`` log-probs + ``(batch,)`` frames."""
        ...


@dataclass(frozen=True)
class Window:
    """One window: the input samples the model reads and the output frames kept (file frame numbers)."""

    start: int  # first input sample, a multiple of samples_per_frame
    end: int  # input samples end here (exclusive)
    keep_start: int  # first kept output frame
    keep_end: int  # kept output frames end here (exclusive)
    first_frame: int  # file frame number of the window's local frame 0


def plan_windows(n_samples: int, samples_per_frame: int, total_frames: int, chunk_frames: int,
                 context_frames: int) -> list[Window]:
    """Cut ``[0, total_frames)`` into kept spans of ``chunk_frames``, each with ``context_frames`` on
    both sides; the last window reaches back to full length (stable per-window feature statistics)."""
    full = chunk_frames + 2 * context_frames
    if total_frames <= full:
        return [Window(0, n_samples, 0, total_frames, 0)]
    windows = []
    for keep_start in range(0, total_frames, chunk_frames):
        keep_end = min(keep_start + chunk_frames, total_frames)
        last = min(total_frames, keep_end + context_frames)
        first = max(0, min(keep_start - context_frames, last - full))
        end = n_samples if last == total_frames else min(n_samples, last * samples_per_frame)
        windows.append(Window(first * samples_per_frame, end, keep_start, keep_end, first))
    return windows


def blank_log_probs(frames: int, vocab_size: int, blank: int = 0) -> torch.Tensor:
    """``(frames, vocab)`` log-probs of certain blanks: the output for silence."""
    out = torch.full((frames, vocab_size), SILENT_LOG_PROB)
    out[:, blank] = 0.0
    return out


def is_silent(waveform: torch.Tensor, samples_per_frame: int) -> bool:
    """Digital silence, or shorter than one output frame: nothing to recognise."""
    return waveform.numel() < samples_per_frame or float(waveform.abs().max()) <= SILENCE_PEAK


def read_span(path: str | os.PathLike, sample_rate: int, start: int, end: int) -> torch.Tensor:
    """Samples ``[start, end)`` of a file at ``sample_rate``, exactly ``end - start`` of them."""
    wave = load_audio(path, sample_rate, start / sample_rate, (end - start) / sample_rate)
    n = end - start
    return wave[:n] if wave.numel() >= n else torch.nn.functional.pad(wave, (0, n - wave.numel()))


def stream_log_probs(path: str | os.PathLike, model: FrameModel, sample_rate: int, n_samples: int,
                     config: WindowConfig, batch_windows: int = 1, blank: int = 0,
                     on_window: Callable[[Window], None] | None = None) -> torch.Tensor:
    """The ``(total_frames, vocab)`` log-probs of a long file, computed window by window.

    ``batch_windows`` windows go through the model together; ``on_window`` is told about each one
    done (progress). Raises :class:`~asr.audio.AudioError` if the file cannot be read.
    """
    frame_rate = sample_rate / model.samples_per_frame
    total = model.output_frames(n_samples)
    windows = plan_windows(n_samples, model.samples_per_frame, total, max(1, round(config.chunk * frame_rate)),
                           round(config.context * frame_rate))
    out = torch.empty(total, model.vocab_size)
    for group in _groups(windows, max(1, batch_windows)):
        waves = [read_span(path, sample_rate, w.start, w.end) for w in group]
        for window, log_probs in zip(group, run_windows(model, waves, blank)):
            local = slice(window.keep_start - window.first_frame, window.keep_end - window.first_frame)
            if local.stop > log_probs.shape[0]:
                raise RuntimeError(f"window {window} gave {log_probs.shape[0]} frames, fewer than it keeps")
            out[window.keep_start : window.keep_end] = log_probs[local]
            if on_window is not None:
                on_window(window)
    return out


def run_windows(model: FrameModel, waves: Sequence[torch.Tensor], blank: int = 0) -> list[torch.Tensor]:
    """Mono waveforms -> their ``(frames, vocab)`` log-probs, in one padded batch; silent ones skip the model."""
    out: list[torch.Tensor | None] = [None] * len(waves)
    loud = []
    for i, wave in enumerate(waves):
        if is_silent(wave, model.samples_per_frame):
            out[i] = blank_log_probs(model.output_frames(wave.numel()), model.vocab_size, blank)
        else:
            loud.append(i)
    if loud:
        lengths = torch.tensor([waves[i].numel() for i in loud])
        batch = torch.zeros(len(loud), int(lengths.max()))
        for row, i in enumerate(loud):
            batch[row, : waves[i].numel()] = waves[i]
        log_probs, out_lengths = model(batch, lengths)
        for row, i in enumerate(loud):
            out[i] = log_probs[row, : int(out_lengths[row])]
    return out  # type: ignore[return-value]


def _groups(items: Sequence[Window], size: int) -> Iterator[Sequence[Window]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def segment_bounds(log_probs: torch.Tensor, max_frames: int, pauses: Sequence[int]) -> list[tuple[int, int]]:
    """Cut ``(frames, vocab)`` log-probs into ``[start, end)`` pieces of at most ``max_frames``.

    Each cut goes in the middle of the longest run of pause frames (best symbol among ``pauses``:
    blank, space) in the last third of the allowed span, so words are not split; with no pause
    there, the cut falls at the limit.
    """
    total = log_probs.shape[0]
    if total <= max_frames:
        return [(0, total)]
    best = log_probs.argmax(-1)
    pause = torch.zeros(total, dtype=torch.bool)
    for p in pauses:
        pause |= best == p
    bounds, start = [], 0
    while total - start > max_frames:
        lo, hi = start + max(1, 2 * max_frames // 3), start + max_frames
        cut = _longest_pause_middle(pause[lo:hi])
        cut = hi if cut is None else lo + cut
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


def _longest_pause_middle(pause: torch.Tensor) -> int | None:
    """Index of the middle of the longest run of True, or None if there is none."""
    best_len, best_mid, run_start = 0, None, None
    values = pause.tolist() + [False]
    for i, p in enumerate(values):
        if p and run_start is None:
            run_start = i
        elif not p and run_start is not None:
            if i - run_start > best_len:
                best_len, best_mid = i - run_start, (run_start + i) // 2
            run_start = None
    return best_mid
