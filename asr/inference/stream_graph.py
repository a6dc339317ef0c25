"""The streaming step as one module: a window of audio and the forward LSTM states -> its log-probs and new states.

What ``scripts/export.py --stream`` writes as ONNX (:mod:`asr.inference.stream_export`) and what
:mod:`asr.inference.onnx_stream` runs, one window per stream per call, many streams as one batch:

    inputs   samples        (batch, window_samples) float32: the audio that window k of each stream reads
                            (absolute samples ``first_sample(k)`` on, zeros before the recording's start and
                            after its end)
             first_frame    (batch,) int64: the window's first output frame, ``k * chunk``
             total_samples  (batch,) int64: the recording's length once it is finished, else UNKNOWN_SAMPLES
             h, c           (layers, batch, hidden) float32: forward LSTM states after chunk k - 1 (zeros for k = 0)
             stats          (batch, 2, n_mels) float64, normalize=utterance only: per-mel sums of the log-mel
                            values and of their squares over the frames read by windows 0 .. k - 1
    outputs  log_probs      (batch, window, vocab) float32: frames ``k * chunk`` on; the first ``chunk`` are
                            final, the rest the right context as this window saw it (past the recording's end:
                            meaningless, the runtime drops them)
             h_out, c_out   the states after chunk k; ``stats_out`` after window k

Inside, the model's own layers: log-mel of every feature frame the window's convolutions read
(:meth:`~asr.model.features.LogMel.log_mel_frames`), normalized (global: the model's statistics;
utterance: a running estimate, every frame of window k with the statistics of all frames up to its
end; none), the convolutions without time padding (their context is in the input) with every layer's
frames outside the recording zeroed as the whole recording's padding is, then
:func:`~asr.model.chunked.run_windows` (the latency-controlled BiLSTM, LSTMs as ONNX ``LSTM`` nodes
with initial states) and the output layer. So, for normalize=global or none, a stream's log-probs are
:class:`~asr.model.streaming.StreamingModel`'s. The window's feature frames are recomputed by each
window that reads them (``feature_frames`` per window for ``chunk * stride`` new ones), which keeps
the graph stateless but for the LSTM states.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from asr.inference.exportable import ONNX_TO_TORCH_GATES, ONNX_TRANSLATIONS, OnnxLSTM, _gates, exportable
from asr.inference.onnx_stream import (STATS_INPUT, STATS_OUTPUT, STATS_ROWS, STREAM_INPUTS, STREAM_OUTPUTS,
                                       UNKNOWN_SAMPLES, StreamGeometry)
from asr.model.acoustic import AcousticModel, receptive_field
from asr.model.chunked import run_windows
from asr.model.features import VARIANCE_FLOOR, frame_lengths


def geometry_of(model: AcousticModel) -> StreamGeometry:
    """The window arithmetic of a chunked model (its ``chunk_frames``, ``right_frames``, convolutions, front end)."""
    sub, features = model.subsampling, model.features
    stride, left, right = receptive_field(sub.time_kernels, sub.time_strides)
    return StreamGeometry(model.chunk_frames, model.right_frames, stride, left, right, features.hop_length,
                          features.dft.shape[-1], features.pad_left, model.feature_config.sample_rate,
                          tuple(sub.time_kernels), tuple(sub.time_strides))


# --- LSTMs with initial states, as ONNX LSTM nodes ------------------------------------------------


@torch.library.custom_op("asr::lstm_layer_state", mutates_args=())
def lstm_layer_state(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, h0: torch.Tensor,
                     c0: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``asr::lstm_layer`` from the states ``h0``, ``c0`` (1, batch, hidden): -> outputs (batch, frames,
    hidden) and the states after the last frame."""
    weights = [_gates(w[0], ONNX_TO_TORCH_GATES), _gates(r[0], ONNX_TO_TORCH_GATES),
               _gates(b[0, : 4 * hidden], ONNX_TO_TORCH_GATES), _gates(b[0, 4 * hidden :], ONNX_TO_TORCH_GATES)]
    y, h, c = torch._VF.lstm(x, (h0, c0), weights, True, 1, 0.0, False, False, True)
    return y, h, c


@lstm_layer_state.register_fake
def _lstm_layer_state_shape(x, w, r, b, h0, c0, hidden):
    return x.new_empty(x.shape[0], x.shape[1], hidden), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def lstm_layer_state_onnx(x, w, r, b, h0, c0, hidden: int):
    """``asr::lstm_layer_state`` as one ONNX ``LSTM`` node with ``initial_h`` and ``initial_c``."""
    from onnxscript import opset18 as op

    y, h, c = op.LSTM(op.Transpose(x, perm=[1, 0, 2]), w, r, b, None, h0, c0, hidden_size=hidden)
    return op.Transpose(op.Squeeze(y, op.Constant(value_ints=[1])), perm=[1, 0, 2]), h, c


STREAM_TRANSLATIONS = {**ONNX_TRANSLATIONS, torch.ops.asr.lstm_layer_state.default: lstm_layer_state_onnx}


class OnnxStateLSTM(OnnxLSTM):
    """:class:`~asr.inference.exportable.OnnxLSTM` that also starts from given states and returns its last ones."""

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if state is None:
            return super().forward(x)
        y, h, c = torch.ops.asr.lstm_layer_state(x, self.w, self.r, self.b, state[0], state[1], self.hidden_size)
        return y, (h, c)


# --- the step -------------------------------------------------------------------------------------


class StreamStep(nn.Module):
    """One streaming window per stream (see the module docstring), for an inference model (split stack,
    eval mode, float32 CPU) whose latency (``chunk_frames``, ``right_frames``) is set."""

    def __init__(self, model: AcousticModel) -> None:
        super().__init__()
        if model.chunk_frames == 0:
            raise ValueError("a streaming step needs a chunked model (set_latency)")
        model = exportable(model, OnnxStateLSTM)  # a copy
        self.geometry = geometry_of(model)
        self.features, self.rnn, self.head = model.features, model.rnn, model.head
        self.normalize = model.feature_config.normalize
        sub = model.subsampling
        self.kernels, self.strides = list(sub.time_kernels), list(sub.time_strides)
        self.blocks = nn.ModuleList()
        for block in sub.blocks:  # the same layers, reading only the frames they are given in time
            block = copy.deepcopy(block)
            block[0].padding = (0, block[0].padding[1])
            self.blocks.append(block)
        g = self.geometry
        frames = g.feature_frames
        for kernel, stride in zip(self.kernels, self.strides):
            frames = (frames - kernel) // stride + 1
        assert frames == g.window, (frames, g.window)  # the receptive field arithmetic holds
        self.eval()

    def forward(self, samples: torch.Tensor, first_frame: torch.Tensor, total_samples: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor, stats: torch.Tensor | None = None):
        g = self.geometry
        logmel = self.features.log_mel_frames(samples)  # (batch, n_mels, feature_frames)
        first_feature = first_frame * g.stride - g.conv_left
        position = first_feature[:, None] + torch.arange(g.feature_frames)[None]  # absolute feature frame
        n_frames = frame_lengths(total_samples, g.hop)
        inside = (position >= 0) & (position < n_frames[:, None])
        if self.normalize == "global":
            feats = self.features.normalize_frames(logmel)
        elif self.normalize == "utterance":
            feats, stats = self._running_normalization(logmel, first_frame, first_feature, position, inside,
                                                       n_frames, stats)
        else:
            feats = logmel
        x = (feats * inside[:, None].to(feats.dtype)).transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, n_mels)
        start, length = first_feature, n_frames
        for block, kernel, stride in zip(self.blocks, self.kernels, self.strides):
            x = block(x)
            start = torch.div(start + kernel // 2, stride, rounding_mode="floor")  # exact: the grid is aligned
            length = torch.div(length + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1
            at = start[:, None] + torch.arange(x.shape[2])[None]
            x = x * ((at >= 0) & (at < length[:, None]))[:, None, :, None].to(x.dtype)  # the recording's padding
        batch, channels, frames, freq = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, 1, frames, channels * freq)  # one window per stream
        valid = (length - first_frame).clamp(0, g.window)[:, None]
        out, (h, c) = run_windows(self.rnn, x, valid, g.chunk, (h, c))
        log_probs = self.head(out[:, 0]).float().log_softmax(-1)
        return (log_probs, h, c) if stats is None else (log_probs, h, c, stats)

    def _running_normalization(self, logmel, first_frame, first_feature, position, inside, n_frames, stats):
        """normalize=utterance: the sums over every frame up to the window's last (``stats`` plus the frames
        no earlier window read) -> the window normalized with their mean and deviation, and the new sums."""
        g = self.geometry
        last = first_feature + g.feature_frames - 1
        seen = torch.where(first_frame > 0, last - g.chunk * g.stride, torch.full_like(last, -1))  # by window k - 1
        values = logmel.double()
        new = (values * (inside & (position > seen[:, None]))[:, None].to(values.dtype))
        stats = stats + torch.stack([new.sum(-1), (new * new).sum(-1)], 1)
        count = torch.minimum(last + 1, n_frames).clamp_min(1).to(values.dtype)[:, None]
        mean = stats[:, 0] / count
        var = (stats[:, 1] / count - mean * mean).clamp_min(0)
        feats = (values - mean[..., None]) * torch.rsqrt(var + VARIANCE_FLOOR)[..., None]
        return feats.float(), stats

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Inputs of ``batch`` streams at their first window (a tracing example)."""
        g = self.geometry
        zeros = torch.zeros(self.rnn.num_layers, batch, self.rnn.hidden_size)
        inputs = (0.1 * torch.randn(batch, g.window_samples, generator=torch.Generator().manual_seed(0)),
                  torch.zeros(batch, dtype=torch.int64), torch.full((batch,), UNKNOWN_SAMPLES), zeros, zeros.clone())
        if self.normalize == "utterance":
            inputs += (torch.zeros(batch, STATS_ROWS, self.features.config.n_mels, dtype=torch.float64),)
        return inputs

    @property
    def input_names(self) -> list[str]:
        return [*STREAM_INPUTS, *([STATS_INPUT] if self.normalize == "utterance" else [])]

    @property
    def output_names(self) -> list[str]:
        return [*STREAM_OUTPUTS, *([STATS_OUTPUT] if self.normalize == "utterance" else [])]
