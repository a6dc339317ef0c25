"""ONNX streaming runtime: audio arriving in pieces -> CTC log-probs, one ONNX Runtime call per window for many streams.

In: float32 samples at the file's rate, per stream, in pieces of any size (:meth:`OnnxStreamingModel.accept`,
then :meth:`~OnnxStreamingModel.finish`). Out, from :meth:`~OnnxStreamingModel.step` (many streams at once):
per stream, a :class:`~asr.model.streaming.StepOutput`: the log-probs ``(frames, vocab)`` of its newly
final output frames and the look-ahead frames after them. The interface of
:class:`~asr.model.streaming.StreamingModel`, so :class:`~asr.inference.stream.Stream` and
``step_streams`` drive either.

The file is a streaming export (``scripts/export.py CKPT -o model.stream.onnx --stream``): its graph runs
one window of each stream (:mod:`asr.inference.stream_graph` says what goes in and out), and its
``asr_export`` metadata carries the window arithmetic (:class:`StreamGeometry`), so this module needs the
file alone: numpy and ONNX Runtime do the work, torch only wraps the outputs. Per stream the host keeps
the audio from the next window's first sample on, the forward LSTM states ``h``, ``c`` ``(layers,
hidden)`` (and, for normalize=utterance, the running feature sums); a stream's window ``k`` runs once
its audio has arrived (or the stream is finished), ready windows of all streams in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from asr.model.streaming import StepOutput

UNKNOWN_SAMPLES = 2**40  # total_samples of a stream still receiving audio (24 years at 16 kHz): no end in sight
STREAM_INPUTS = ("samples", "first_frame", "total_samples", "h", "c")
STREAM_OUTPUTS = ("log_probs", "h_out", "c_out")
STATS_INPUT, STATS_OUTPUT = "stats", "stats_out"  # normalize=utterance only
STATS_ROWS = 2  # the running feature sums: per mel bin, of the values and of their squares


@dataclass(frozen=True)
class StreamGeometry:
    """The window arithmetic of a streaming export (frames are output frames unless named feature frames)."""

    chunk: int  # output frames final per window
    right: int  # right-context frames after them
    stride: int  # feature frames per output frame
    conv_left: int  # feature frames a conv output reads before its own ...
    conv_right: int  # ... and after
    hop: int  # samples per feature frame
    win: int  # samples an analysis window reads
    pad_left: int  # feature frame t reads samples t * hop - pad_left to t * hop - pad_left + win
    sample_rate: int
    time_kernels: tuple[int, ...]  # the convolutions' (output frames per recording length)
    time_strides: tuple[int, ...]

    @property
    def window(self) -> int:
        return self.chunk + self.right

    @property
    def feature_frames(self) -> int:
        """Feature frames a window's convolutions read."""
        return (self.window - 1) * self.stride + self.conv_left + self.conv_right + 1

    @property
    def window_samples(self) -> int:
        return (self.feature_frames - 1) * self.hop + self.win

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return self.sample_rate / (self.hop * self.stride)

    def first_sample(self, first_frame: int) -> int:
        """Absolute sample at which the window starting at output frame ``first_frame`` reads."""
        return (first_frame * self.stride - self.conv_left) * self.hop - self.pad_left

    def output_frames(self, n_samples: int) -> int:
        """Output frames of a recording of ``n_samples`` (the model's ``subsampled_lengths``)."""
        frames = n_samples // self.hop + 1
        for kernel, stride in zip(self.time_kernels, self.time_strides):
            frames = (frames + 2 * (kernel // 2) - kernel) // stride + 1
        return frames

    def samples_before(self, chunk: int) -> int:
        """Samples a stream needs before chunk number ``chunk`` can run (StreamingModel.next_chunk_samples)."""
        last_feature = (chunk * self.chunk + self.window - 1) * self.stride + self.conv_right
        return last_feature * self.hop - self.pad_left + self.win

    @property
    def latency(self) -> float:
        """Seconds from the audio of a chunk's first frame to its log-probs (StreamingModel.latency)."""
        last_feature = (self.window - 1) * self.stride + self.conv_right
        return (last_feature * self.hop - self.pad_left + self.win) / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamGeometry:
        return cls(**{k: tuple(map(int, v)) if isinstance(v, list) else int(v) for k, v in d.items()})


class Session(Protocol):
    """What runs the graph: an ``onnxruntime.InferenceSession`` (or anything with its ``run``)."""

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class OnnxStreamState:
    """What one stream carries between calls (positions are absolute: samples or frames since its start)."""

    audio: np.ndarray  # samples from `audio_start` on (float32)
    pieces: list[np.ndarray] = field(default_factory=list)  # accepted, not yet joined to `audio`
    audio_start: int = 0
    received: int = 0
    finished: bool = False
    h: np.ndarray | None = None  # (layers, hidden): forward LSTM states after the last chunk
    c: np.ndarray | None = None
    stats: np.ndarray | None = None  # (STATS_ROWS, n_mels) float64, normalize=utterance
    chunk: int = 0  # next chunk to run
    emitted: int = 0  # output frames given out
    done: bool = False  # finished, and every frame's log-probs given out


class OnnxStreamingModel:
    """A streaming export run by ONNX Runtime (see the module docstring).

    Args:
        session: the file's InferenceSession.
        meta: the file's ``asr_export`` metadata (its ``stream`` entry: geometry, normalization, sizes).
    """

    def __init__(self, session: Session, meta: dict[str, Any]) -> None:
        stream = meta["stream"]
        self.session = session
        self.geometry = StreamGeometry.from_dict(stream["geometry"])
        self.layers, self.hidden, self.n_mels = int(stream["layers"]), int(stream["hidden"]), int(stream["n_mels"])
        self.normalization = stream["normalize"]
        self.input_names, self.output_names = list(stream["inputs"]), list(stream["outputs"])
        self.vocab_size = int(meta["vocab_size"])
        self.sample_rate = self.geometry.sample_rate
        self.frame_rate = self.geometry.frame_rate
        self.chunk, self.right_frames, self.window = self.geometry.chunk, self.geometry.right, self.geometry.window

    @property
    def latency(self) -> float:
        return self.geometry.latency

    def new_state(self) -> OnnxStreamState:
        return OnnxStreamState(audio=np.zeros(0, np.float32))

    def next_chunk_samples(self, state: OnnxStreamState) -> int:
        """Samples a stream must have received before its next chunk can run (as StreamingModel's)."""
        return self.geometry.samples_before(state.chunk)

    def accept(self, state: OnnxStreamState, samples: torch.Tensor | np.ndarray) -> None:
        """Add samples (1-D float32 at the file's rate) to a stream; nothing is computed here."""
        if state.finished:
            raise ValueError("this stream is finished: start a new one")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        state.pieces.append(samples)
        state.received += samples.size

    def finish(self, state: OnnxStreamState) -> None:
        """No more audio: the next step computes the stream's last frames."""
        state.finished = True

    def step(self, states: list[OnnxStreamState]) -> list[StepOutput]:
        """Run every window the streams' audio allows; one output per stream, in order."""
        finals: list[list[np.ndarray]] = [[] for _ in states]
        firsts = [state.emitted for state in states]
        lookahead: list[np.ndarray | None] = [None] * len(states)
        while True:
            ready = [i for i, state in enumerate(states) if self._ready(state)]
            if not ready:
                break
            for i, (own, ahead) in zip(ready, self._run_windows([states[i] for i in ready])):
                finals[i].append(own)
                lookahead[i] = ahead
        empty = np.zeros((0, self.vocab_size), np.float32)
        out = []
        for i, state in enumerate(states):
            state.done = state.finished and state.chunk * self.chunk >= self.geometry.output_frames(state.received)
            own = np.concatenate(finals[i]) if len(finals[i]) > 1 else finals[i][0] if finals[i] else empty
            out.append(StepOutput(firsts[i], torch.from_numpy(own),
                                  torch.from_numpy(lookahead[i] if lookahead[i] is not None else empty)))
        return out

    def _ready(self, state: OnnxStreamState) -> bool:
        first = state.chunk * self.chunk
        if state.finished:
            return first < self.geometry.output_frames(state.received)
        return state.received >= self.geometry.first_sample(first) + self.geometry.window_samples

    def _valid(self, state: OnnxStreamState) -> int:
        """Frames of the stream's next window inside the recording (all of them until it is finished)."""
        if not state.finished:
            return self.window
        return max(0, min(self.window, self.geometry.output_frames(state.received) - state.chunk * self.chunk))

    def _window_samples(self, state: OnnxStreamState, out: np.ndarray) -> None:
        """The samples the stream's next window reads into ``out`` (zeros outside the recording)."""
        if state.pieces:
            state.audio = np.concatenate([state.audio, *state.pieces])
            state.pieces = []
        start = self.geometry.first_sample(state.chunk * self.chunk)
        lo, hi = max(start, state.audio_start), min(start + out.size, state.audio_start + state.audio.size)
        if hi > lo:
            out[lo - start: hi - start] = state.audio[lo - state.audio_start: hi - state.audio_start]

    def _run_windows(self, states: list[OnnxStreamState]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One window of each stream through the graph, as one batch -> per stream (final, look-ahead)."""
        g, n = self.geometry, len(states)
        samples = np.zeros((n, g.window_samples), np.float32)
        for row, state in enumerate(states):
            self._window_samples(state, samples[row])
            if state.h is None:  # a stream's first window
                state.h = np.zeros((self.layers, self.hidden), np.float32)
                state.c = np.zeros((self.layers, self.hidden), np.float32)
                state.stats = np.zeros((STATS_ROWS, self.n_mels), np.float64)
        feeds = {"samples": samples,
                 "first_frame": np.array([s.chunk * self.chunk for s in states], np.int64),
                 "total_samples": np.array([s.received if s.finished else UNKNOWN_SAMPLES for s in states], np.int64),
                 "h": np.stack([s.h for s in states], 1), "c": np.stack([s.c for s in states], 1)}
        if STATS_INPUT in self.input_names:
            feeds[STATS_INPUT] = np.stack([s.stats for s in states])
        outputs = self.session.run(self.output_names, feeds)
        log_probs, h, c = outputs[:3]
        results = []
        for row, state in enumerate(states):
            valid = self._valid(state)
            own = min(self.chunk, valid)
            results.append((log_probs[row, :own], log_probs[row, own:valid]))
            state.h, state.c = h[:, row], c[:, row]
            if STATS_OUTPUT in self.output_names:
                state.stats = outputs[3][row]
            state.chunk += 1
            state.emitted += own
            keep = max(0, g.first_sample(state.chunk * self.chunk))  # the next window's first sample
            if keep > state.audio_start:
                state.audio = state.audio[keep - state.audio_start:]
                state.audio_start = keep
        return results
