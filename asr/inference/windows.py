"""Long recordings: a file of any length -> the log-probs of the whole file, computed window by window.

The file is first cut at its pauses: stretches of at least ``pause`` seconds whose level stays near
the recording's noise floor (:func:`quiet_frames`). Each piece between two cuts, trimmed to a little
quiet at each end, goes through the model alone, as the utterances it was trained on did: a model
trained on single sentences garbles a sentence it reads straight after another one (54 % WER on a
recording of concatenated synthetic sentences read in fixed windows, 16.5 % on the same sentences
one by one: benchmarks/README.md), and the cut costs nothing since nobody speaks there. Frames of
the pauses are blank, with a word boundary at each cut.

A piece longer than one window is read in overlapping windows (``asr.audio.load_audio`` with a start
and a duration, so a 2-hour file is never in memory as audio, nor in the model at once; its log-probs
come out window by window, :func:`stream_frames`, and the decoder takes them segment by segment,
:func:`stream_segments`). Each window
is the span of output frames it keeps (``chunk`` seconds) plus ``context`` seconds of audio on each
side that the model sees but whose output is dropped: the bidirectional LSTM is given both sides of
every kept frame and no hidden state is carried from one window to the next. Cuts and window starts
are multiples of the model's samples per output frame, so local frame ``k`` of a window is exactly
frame ``first_frame + k`` of the file; the kept spans tile each piece with no gap and no overlap,
and the merged log-probs have as many frames as the file decoded in one piece. Any decoder then
reads the merged stream as one, so no word is lost or doubled at a seam.

The merged stream is small (frames x vocab floats: 28 MB for two hours at 33 frames/s and 29
symbols). Beam search and alignment read it in segments of at most ``segment`` seconds, cut in the
longest pause (run of blank or space frames) near each limit (:func:`segment_bounds`).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import torch

from asr.audio import load_audio
from asr.memory import release_free_memory

SILENCE_PEAK = 1e-4  # -80 dBFS: a window no louder than this is digital silence and not run through the model
SILENT_LOG_PROB = -1e4  # log-prob of every non-blank symbol in a frame of digital silence
# Pauses. A frame is quiet if its level (mean square, dB) is within PAUSE_MARGIN_DB of the noise floor,
# the NOISE_FLOOR_QUANTILE of the recording's frame levels (at least FLOOR_MIN_DB: digital silence),
# and at least MIN_RANGE_DB below its loud frames (LOUD_QUANTILE): a recording with no such range
# (steady noise, music) has no pauses.
PAUSE_MARGIN_DB = 10.0
NOISE_FLOOR_QUANTILE = 0.05
LOUD_QUANTILE = 0.95
MIN_RANGE_DB = 20.0
FLOOR_MIN_DB = -90.0
LEVEL_BLOCK_SECONDS = 60.0  # the levels are measured reading this much audio at a time
PIECE_MARGIN_S = 0.1  # quiet kept at each end of a piece, seconds (the synthetic corpus keeps 0.1-0.2 s)


@dataclass(frozen=True)
class WindowConfig:
    """How long recordings are cut (seconds)."""

    chunk: float = 20.0  # output kept per window
    context: float = 4.0  # audio seen on each side of the kept part, output dropped
    segment: float = 30.0  # longest piece of the merged log-probs decoded at once (beam search, alignment)
    pause: float = 0.25  # a quiet stretch this long is cut in its middle, pieces go through the model alone; 0: no cuts

    def __post_init__(self) -> None:
        if self.chunk <= 0 or self.context < 0 or self.segment <= 0 or self.pause < 0:
            raise ValueError(f"window sizes must be positive (chunk {self.chunk}, context {self.context}, "
                             f"segment {self.segment}, pause {self.pause} seconds)")

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


def frame_levels(path: str | os.PathLike, sample_rate: int, n_samples: int, samples_per_frame: int) -> torch.Tensor:
    """``(n_samples // samples_per_frame,)`` level of each output frame's samples, dB (mean square re full scale).

    Reads the file ``LEVEL_BLOCK_SECONDS`` at a time. Raises :class:`~asr.audio.AudioError`.
    """
    frames = n_samples // samples_per_frame
    block = max(1, int(LEVEL_BLOCK_SECONDS * sample_rate) // samples_per_frame)  # frames per read
    levels = torch.empty(frames)  # filled in place: no tensor kept per block
    for first in range(0, frames, block):
        count = min(block, frames - first)
        wave = read_span(path, sample_rate, first * samples_per_frame, (first + count) * samples_per_frame)
        power = wave.view(count, samples_per_frame).double().pow(2).mean(-1)
        levels[first : first + count] = 10 * torch.log10(power + 1e-12).float()
    return levels


def quiet_frames(levels: torch.Tensor) -> torch.Tensor:
    """Which frames are quiet (a bool tensor like ``levels``): near the recording's noise floor, well
    below its loud frames."""
    if levels.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    floor = max(FLOOR_MIN_DB, float(torch.quantile(levels, NOISE_FLOOR_QUANTILE)))
    loud = float(torch.quantile(levels, LOUD_QUANTILE))
    return levels <= min(floor + PAUSE_MARGIN_DB, loud - MIN_RANGE_DB)


def pause_cuts(quiet: Sequence[bool] | torch.Tensor, min_frames: int) -> list[int]:
    """Frame numbers at the middle of each quiet run of at least ``min_frames`` frames that has sound
    on both sides; increasing."""
    quiet = torch.as_tensor(quiet, dtype=torch.bool)
    edges = torch.diff(torch.nn.functional.pad(quiet.to(torch.int8), (1, 1)))  # 1: a run starts, -1: it ended
    starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    cut = (starts > 0) & (ends < quiet.numel()) & (ends - starts >= max(1, min_frames))
    return ((starts[cut] + ends[cut]) // 2).tolist()


def speech_pieces(levels: torch.Tensor, quiet: Sequence[bool] | torch.Tensor, cuts: Sequence[int],
                  total_frames: int, margin_frames: int) -> list[tuple[int, int, int]]:
    """The speech between consecutive cuts, as ``(start, end, limit)`` frame numbers (``levels`` and
    ``quiet`` have one entry per output frame; ``limit``: the next cut, or ``total_frames``).

    Each piece is trimmed of its quiet frames beyond ``margin_frames`` at each end (the silence kept
    around a training utterance) and of all digital silence there (``FLOOR_MIN_DB``: the model never
    heard it, and its log-mel, far below any noise, would skew the piece's feature normalization);
    all-quiet pieces are dropped."""
    bounds = [0, *(c for c in cuts if 0 < c < total_frames), total_frames]
    quiet, silent = torch.as_tensor(quiet, dtype=torch.bool), levels <= FLOOR_MIN_DB
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        loud = (~quiet[a:b]).nonzero().flatten()
        if loud.numel() == 0:
            continue
        first, last = a + int(loud[0]), a + int(loud[-1])
        start, end = first, last + 1
        while start > max(a, first - margin_frames) and not silent[start - 1]:
            start -= 1
        while end < min(b, last + 1 + margin_frames) and not silent[end]:
            end += 1
        pieces.append((start, end, b))
    return pieces


def plan_pieces(n_samples: int, samples_per_frame: int, total_frames: int, chunk_frames: int,
                context_frames: int, pieces: Sequence[tuple[int, int, int]]) -> list[Window]:
    """The windows of ``pieces`` (see :func:`speech_pieces`): a piece up to one window long is one
    window with no context; a longer one is windowed by :func:`plan_windows`. Kept spans tile each
    piece and reach on to its ``limit``: a model emits the last symbol of an utterance on its last
    frames, which may lie past the piece's trimmed end."""
    windows = []
    for a, b, limit in pieces:
        start, end = a * samples_per_frame, n_samples if b == total_frames else b * samples_per_frame
        for w in plan_windows(end - start, samples_per_frame, b - a, chunk_frames, context_frames):
            keep_end = limit if w.keep_end == b - a else w.keep_end + a
            windows.append(Window(w.start + start, w.end + start, w.keep_start + a, keep_end, w.first_frame + a))
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
                     on_window: Callable[[Window], None] | None = None, boundary: int | None = None) -> torch.Tensor:
    """The ``(total_frames, vocab)`` log-probs of a long file, computed window by window: the chunks
    of :func:`stream_frames` (same arguments) in one tensor."""
    return merge_frames(stream_frames(path, model, sample_rate, n_samples, config, batch_windows, blank, on_window,
                                      boundary), model.output_frames(n_samples), model.vocab_size)


def merge_frames(chunks: Iterable[tuple[int, torch.Tensor]], total_frames: int, vocab_size: int) -> torch.Tensor:
    """``(first frame, (frames, vocab) log-probs)`` chunks that tile ``[0, total_frames)`` -> one
    ``(total_frames, vocab)`` tensor, filled in place."""
    out = torch.empty(total_frames, vocab_size)
    for first, log_probs in chunks:
        out[first : first + log_probs.shape[0]] = log_probs
    return out


def stream_frames(path: str | os.PathLike, model: FrameModel, sample_rate: int, n_samples: int,
                  config: WindowConfig, batch_windows: int = 1, blank: int = 0,
                  on_window: Callable[[Window], None] | None = None,
                  boundary: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """The log-probs of a long file as they are computed: ``(first frame, (frames, vocab) log-probs)``
    chunks that tile its ``model.output_frames(n_samples)`` frames in order, each at most one
    window's kept part (``config.chunk`` seconds; pauses come as blank chunks of at most that).

    ``batch_windows`` windows go through the model together; ``on_window`` is told about each one
    done (progress); pauses are blank, with the symbol ``boundary`` (a space: a word ends there) at
    each cut. Raises :class:`~asr.audio.AudioError` if the file cannot be read.
    """
    spf = model.samples_per_frame
    frame_rate = sample_rate / spf
    total = model.output_frames(n_samples)
    chunk_frames = max(1, round(config.chunk * frame_rate))
    pieces, cuts = [(0, total, total)], []
    if config.pause > 0:
        levels = frame_levels(path, sample_rate, n_samples, spf)[:total]
        levels = torch.cat([levels, levels[-1:].expand(total - levels.numel())])  # the last partial frame(s)
        quiet = quiet_frames(levels)
        cuts = [c for c in pause_cuts(quiet, round(config.pause * frame_rate)) if c < total]
        pieces = speech_pieces(levels, quiet, cuts, total, round(PIECE_MARGIN_S * frame_rate))
        del levels, quiet
    marks = cuts if boundary is not None else []
    windows = plan_pieces(n_samples, spf, total, chunk_frames, round(config.context * frame_rate), pieces)
    done = 0  # frames [0, done) are out
    for group in _groups(windows, max(1, batch_windows)):
        waves = [read_span(path, sample_rate, w.start, w.end) for w in group]
        for window, log_probs in zip(group, run_windows(model, waves, blank)):
            local = slice(window.keep_start - window.first_frame, window.keep_end - window.first_frame)
            short = local.stop - log_probs.shape[0]
            if short > 0 and window.end > window.keep_end * spf:  # only a piece ending in a pause may come short
                raise RuntimeError(f"window {window} gave {log_probs.shape[0]} frames, fewer than it keeps")
            if short > 0:  # frames past the piece's end lie in the pause: blank
                log_probs = torch.cat([log_probs, blank_log_probs(short, model.vocab_size, blank)])
            yield from _pause(done, window.keep_start, chunk_frames, model.vocab_size, blank, marks, boundary)
            yield window.keep_start, log_probs[local]
            done = window.keep_end
            if on_window is not None:
                on_window(window)
        del waves
        release_free_memory()  # the group's tensors, of sizes that may never come again (asr.memory)
    yield from _pause(done, total, chunk_frames, model.vocab_size, blank, marks, boundary)


def _pause(start: int, end: int, chunk_frames: int, vocab_size: int, blank: int, cuts: Sequence[int],
           boundary: int | None) -> Iterator[tuple[int, torch.Tensor]]:
    """Frames ``[start, end)`` that no window keeps, in blank chunks of at most ``chunk_frames``,
    with ``boundary`` at the ``cuts`` among them."""
    for first in range(start, end, chunk_frames):
        last = min(end, first + chunk_frames)
        out = blank_log_probs(last - first, vocab_size, blank)
        for cut in cuts[bisect.bisect_left(cuts, first) : bisect.bisect_left(cuts, last)]:
            out[cut - first, :] = SILENT_LOG_PROB
            out[cut - first, boundary] = 0.0
        yield first, out


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


def segment_bounds(log_probs: torch.Tensor, max_frames: int, blank: int, space: int) -> list[tuple[int, int]]:
    """Cut ``(frames, vocab)`` log-probs into ``[start, end)`` pieces of at most ``max_frames``.

    Each cut goes in the middle of the longest pause (run of frames whose best symbol is blank or
    space) that holds a space, in the last third of the allowed span, so words are not split; with
    no such pause there, the longest run of blanks (a word may end there unmarked); with none at
    all, the cut falls at the limit.
    """
    total = log_probs.shape[0]
    if total <= max_frames:
        return [(0, total)]
    bounds, start = [], 0
    while total - start > max_frames:
        cut = start + _segment_end(log_probs[start : start + max_frames].argmax(-1), max_frames, blank, space)
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


def stream_segments(chunks: Iterable[tuple[int, torch.Tensor]], max_frames: int, blank: int,
                    space: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Contiguous ``(first frame, (frames, vocab) log-probs)`` chunks from frame 0 on (:func:`stream_frames`)
    -> the pieces :func:`segment_bounds` cuts their concatenation into, as ``(first frame, log-probs)``,
    each as soon as the frames that place its end are in: at most ``max_frames`` plus one chunk are held."""
    held: list[torch.Tensor] = []  # frames from ``start`` on, ``count`` of them
    start, count = 0, 0
    for _, log_probs in chunks:
        held.append(log_probs)
        count += log_probs.shape[0]
        if count <= max_frames:
            continue
        frames = torch.cat(held) if len(held) > 1 else held[0]
        while frames.shape[0] > max_frames:  # more frames follow the first max_frames: a cut falls in them
            cut = _segment_end(frames[:max_frames].argmax(-1), max_frames, blank, space)
            yield start, frames[:cut]
            frames, start = frames[cut:], start + cut
        held, count = [frames], frames.shape[0]
    if held:
        yield start, torch.cat(held) if len(held) > 1 else held[0]


def _segment_end(best: torch.Tensor, max_frames: int, blank: int, space: int) -> int:
    """Where a segment whose first ``max_frames`` frames have the best symbols ``best`` ends, counted
    from its start, when more frames follow it (:func:`segment_bounds`)."""
    lo = max(1, 2 * max_frames // 3)
    tail = best[lo:max_frames]
    cut = _longest_pause_middle((tail == blank) | (tail == space), tail == space)
    return max_frames if cut is None else lo + cut


def _longest_pause_middle(pause: torch.Tensor, word_end: torch.Tensor) -> int | None:
    """Index of the middle of the longest run of ``pause`` that holds a ``word_end``, else of the
    longest run; None if there is no run."""
    best, run_start = (False, 0, None), None  # (holds a word end, length, middle)
    values, ends = pause.tolist() + [False], word_end.tolist() + [False]
    for i, p in enumerate(values):
        if p and run_start is None:
            run_start = i
        elif not p and run_start is not None:
            run = (any(ends[run_start:i]), i - run_start, (run_start + i) // 2)
            if run[:2] > best[:2]:
                best = run
            run_start = None
    return best[2]
