"""Streaming: audio arriving in pieces -> CTC log-probs of the frames that can no longer change.

In: float32 samples at the model's rate, per stream, in pieces of any size (:meth:`StreamingModel.accept`,
then :meth:`~StreamingModel.finish`). Out, from :meth:`StreamingModel.step` (many streams at once,
batched on the model's device): per stream, the log-probs ``(frames, vocab)`` of its newly final
output frames, and the look-ahead frames after them (their values as the last window saw them:
they may still change).

Each stage keeps only what the next one still needs:

- features: frame ``t`` is computed once the samples it reads have arrived (``log_mel_frames``),
  then normalized: ``normalize=global`` with the model's statistics (exact), ``normalize=utterance``
  with a running estimate over the frames so far (an approximation of a model trained on whole
  utterances), ``none`` as is;
- convolutions: output frame ``j`` once every feature frame of its receptive field exists
  (:func:`~asr.model.acoustic.receptive_field`), recomputed from a few frames of left context on a
  grid aligned with the whole recording's, so the values are the whole recording's;
- LSTMs: chunk ``k`` once its window (``chunk + right`` frames) exists, by
  :func:`~asr.model.chunked.run_windows` with the forward states the stream carries. Ready windows
  of all streams go through the LSTMs and the output layer as one batch.

At :meth:`~StreamingModel.finish` the recording's end is known and the last frames are computed as the
whole recording's are (zeros past the end, the same masks). So a stream's log-probs are those of
``AcousticModel.forward`` on the whole recording in chunked mode (within float rounding), whatever
the sizes of its pieces, for a model normalized globally or not at all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from asr.model.acoustic import AcousticModel, receptive_field, subsampled_lengths
from asr.model.chunked import run_windows
from asr.model.features import VARIANCE_FLOOR, frame_lengths
from asr.model.lstm import SplitBiLSTM


@dataclass
class StreamState:
    """What one stream carries between calls (positions are absolute: frames since its start)."""

    audio: torch.Tensor  # samples not yet framed, from sample `audio_start`
    audio_start: int = 0
    received: int = 0
    finished: bool = False
    feats: torch.Tensor | None = None  # (n_mels, frames) normalized, from frame `feat_start`
    feat_start: int = 0
    feat_end: int = 0
    conv: torch.Tensor | None = None  # (frames, features) after the convolutions, from output frame `conv_start`
    conv_start: int = 0
    conv_end: int = 0
    h: torch.Tensor | None = None  # (layers, hidden): forward LSTM states after the last chunk
    c: torch.Tensor | None = None
    chunk: int = 0  # next chunk to run
    emitted: int = 0  # output frames given out
    sums: list[torch.Tensor] = field(default_factory=list)  # running normalization: [frames, sum, sum of squares]
    done: bool = False  # finished, and every frame's log-probs given out


@dataclass
class StepOutput:
    """What one :meth:`StreamingModel.step` gave a stream: final frames and the look-ahead after them."""

    first_frame: int  # absolute index of log_probs[0]
    log_probs: torch.Tensor  # (frames, vocab) CPU float32, final
    lookahead: torch.Tensor  # (frames, vocab) after them, provisional


class StreamingModel:
    """An :class:`AcousticModel` run on streams (see the module docstring).

    Args:
        model: the acoustic model (put in eval mode; its weights are shared, not copied).
        chunk, right_context: seconds; default: the model's own (``model.chunk``). A model trained on
            whole utterances needs them (it streams at the accuracy benchmarks/streaming.py measures).
    """

    def __init__(self, model: AcousticModel, chunk: float | None = None, right_context: float | None = None) -> None:
        model = _streamable(model)  # its own latency settings; the weights stay shared
        if chunk is not None:
            model.set_latency(chunk, right_context or 0.0)
        if model.chunk_frames == 0:
            raise ValueError("this model reads whole utterances (it was trained with model.chunk=0): give a chunk "
                             "and a right context in seconds to stream it, e.g. chunk=0.4, right_context=0.4")
        self.model = model.eval()
        features = model.features
        self.hop, self.win = features.hop_length, features.dft.shape[-1]
        self.pad_left = features.pad_left
        self.stride, self.left, self.right = receptive_field(model.subsampling.time_kernels,
                                                             model.subsampling.time_strides)
        self.chunk, self.right_frames = model.chunk_frames, model.right_frames
        self.window = self.chunk + self.right_frames
        self.device = next(model.parameters()).device
        self.normalization = model.feature_config.normalize
        self.sample_rate = model.feature_config.sample_rate

    @property
    def latency(self) -> float:
        """Algorithmic latency, seconds: from the audio of a chunk's first frame to its log-probs (the
        chunk, its right context, and the look-ahead of the convolutions and of the analysis window)."""
        last_conv = self.window - 1  # the window's last output frame, counted from the chunk's first
        last_feature = last_conv * self.stride + self.right
        last_sample = last_feature * self.hop - self.pad_left + self.win
        return last_sample / self.sample_rate

    def next_chunk_samples(self, state: StreamState) -> int:
        """Samples a stream must have received before its next chunk can run (a step before that gives
        nothing new unless the stream is finished): the end of the analysis window of the last feature
        frame that the chunk's window and the convolutions' look-ahead read."""
        last_feature = (state.chunk * self.chunk + self.window - 1) * self.stride + self.right
        return last_feature * self.hop - self.pad_left + self.win

    def new_state(self) -> StreamState:
        return StreamState(audio=torch.zeros(0))

    def accept(self, state: StreamState, samples: torch.Tensor) -> None:
        """Add samples (1-D float32 at the model's rate) to a stream; nothing is computed here."""
        if state.finished:
            raise ValueError("this stream is finished: start a new one")
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        state.audio = torch.cat([state.audio, samples])
        state.received += samples.numel()

    def finish(self, state: StreamState) -> None:
        """No more audio: the next step computes the stream's last frames."""
        state.finished = True

    # --- the stages ------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, states: list[StreamState]) -> list[StepOutput]:
        """Compute what the streams' audio allows; one output per stream, in order."""
        for state in states:
            self._features(state)
            self._convolutions(state)
        finals: list[list[torch.Tensor]] = [[] for _ in states]
        firsts = [state.emitted for state in states]
        lookahead: list[torch.Tensor | None] = [None] * len(states)
        while True:
            ready = [i for i, state in enumerate(states) if self._chunk_ready(state)]
            if not ready:
                break
            for i, (own, ahead) in zip(ready, self._run_chunks([states[i] for i in ready])):
                finals[i].append(own)
                lookahead[i] = ahead
        vocab = self.model.head.out_features
        empty = torch.zeros(0, vocab)
        out = []
        for i, state in enumerate(states):
            state.done = state.finished and state.feat_end >= self._n_frames(state) and \
                self._n_out(state) <= state.chunk * self.chunk
            out.append(StepOutput(firsts[i], torch.cat(finals[i]) if finals[i] else empty,
                                  lookahead[i] if lookahead[i] is not None else empty))
        return out

    def _n_frames(self, state: StreamState) -> int:
        return int(frame_lengths(torch.tensor(state.received), self.hop))

    def _n_out(self, state: StreamState) -> int:
        m = self.model.subsampling
        return int(subsampled_lengths(torch.tensor(self._n_frames(state)), m.time_kernels, m.time_strides))

    def _features(self, state: StreamState) -> None:
        if state.finished:
            last = self._n_frames(state) - 1
        else:
            last = (state.received + self.pad_left - self.win) // self.hop  # the last frame whose samples are all here
        if last < state.feat_end:
            return
        start = state.feat_end * self.hop - self.pad_left  # absolute sample of the first new frame's start
        end = last * self.hop - self.pad_left + self.win
        region = state.audio[max(0, start - state.audio_start): max(0, end - state.audio_start)]
        region = nn.functional.pad(region, (max(0, -start), end - max(start, 0) - region.numel()))  # zeros off the ends
        logmel = self.model.features.log_mel_frames(region[None].to(self.device))[0]  # (n_mels, new frames)
        feats = self._normalize(state, logmel)
        state.feats = feats if state.feats is None else torch.cat([state.feats, feats], 1)
        state.feat_end = last + 1
        keep_from = max(0, state.feat_end * self.hop - self.pad_left)  # the next frame's first sample
        state.audio = state.audio[max(0, keep_from - state.audio_start):]
        state.audio_start = max(state.audio_start, keep_from)

    def _normalize(self, state: StreamState, logmel: torch.Tensor) -> torch.Tensor:
        features = self.model.features
        if self.normalization == "global":
            return features.normalize_frames(logmel[None])[0]
        if self.normalization == "utterance":  # a running estimate of the utterance's statistics
            values = logmel.double()
            if not state.sums:
                state.sums = [torch.zeros((), dtype=torch.float64), torch.zeros(values.shape[0], dtype=torch.float64,
                                                                                 device=values.device),
                              torch.zeros(values.shape[0], dtype=torch.float64, device=values.device)]
            n, total, squares = state.sums
            state.sums = [n + values.shape[1], total + values.sum(1), squares + (values * values).sum(1)]
            n, total, squares = state.sums
            mean = total / n
            var = (squares / n - mean * mean).clamp_min(0)
            return ((values - mean[:, None]) * torch.rsqrt(var + VARIANCE_FLOOR)[:, None]).float()
        return logmel

    def _convolutions(self, state: StreamState) -> None:
        if state.feats is None:
            return
        if state.finished:
            total = self._n_frames(state)
            if state.feat_end < total:
                return
            last = self._n_out(state) - 1
        else:
            last = (state.feat_end - 1 - self.right) // self.stride
        if last < state.conv_end:
            return
        first_feature = max(0, state.conv_end * self.stride - self.left) // self.stride * self.stride
        feats = state.feats[:, first_feature - state.feat_start:]
        length = feats.shape[1] if not state.finished else self._n_frames(state) - first_feature
        out, _ = self.model.subsampling(feats[None], torch.tensor([length], device=feats.device))
        skip = state.conv_end - first_feature // self.stride
        new = out[0, skip: skip + last + 1 - state.conv_end]
        state.conv = new if state.conv is None else torch.cat([state.conv, new])
        state.conv_end = last + 1
        drop = max(0, state.conv_end * self.stride - self.left) // self.stride * self.stride
        if drop > state.feat_start:
            state.feats = state.feats[:, drop - state.feat_start:]
            state.feat_start = drop

    def _chunk_ready(self, state: StreamState) -> bool:
        first = state.chunk * self.chunk
        if state.finished and state.feat_end >= self._n_frames(state):
            return first < self._n_out(state) and state.conv_end >= self._n_out(state)
        return state.conv_end >= first + self.window

    def _run_chunks(self, states: list[StreamState]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One chunk of each stream through the LSTMs and the output layer, as one batch."""
        windows, valid = [], []
        for state in states:
            first = state.chunk * self.chunk
            frames = state.conv[first - state.conv_start: first - state.conv_start + self.window]
            valid.append(frames.shape[0])
            windows.append(nn.functional.pad(frames, (0, 0, 0, self.window - frames.shape[0])))
        x = torch.stack(windows)[:, None]  # (streams, 1, window, features)
        lengths = torch.tensor(valid, device=x.device)[:, None]
        rnn = self.model.rnn
        for state in states:
            if state.h is None:  # a stream's first chunk
                state.h = x.new_zeros(rnn.num_layers, rnn.hidden_size)
                state.c = x.new_zeros(rnn.num_layers, rnn.hidden_size)
        h = torch.stack([s.h for s in states], 1)
        c = torch.stack([s.c for s in states], 1)
        out, (h, c) = run_windows(self.model.rnn, x, lengths, self.chunk, (h, c))
        log_probs = self.model.head(out[:, 0]).float().log_softmax(-1).cpu()  # (streams, window, vocab)
        results = []
        for i, state in enumerate(states):
            state.h, state.c = h[:, i], c[:, i]
            own = min(self.chunk, valid[i])
            results.append((log_probs[i, :own], log_probs[i, own: valid[i]]))
            state.chunk += 1
            state.emitted += own
            keep = state.chunk * self.chunk
            state.conv = state.conv[keep - state.conv_start:]
            state.conv_start = keep
        return results


def _streamable(model: AcousticModel) -> AcousticModel:
    """A shallow copy of ``model`` (shared weights, latency of its own), with the split LSTM stack
    the chunked mode needs: a packed model's weights are loaded into one (a copy of them)."""
    if isinstance(model.rnn, SplitBiLSTM):
        return copy.copy(model)
    config = model.config_dict()
    config["model"] = {**config["model"], "rnn_impl": "split"}
    split = AcousticModel.from_config_dict(config)
    split.load_state_dict(model.state_dict())
    return split.to(next(model.parameters()).device)
