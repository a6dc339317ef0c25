"""The model's LSTMs in forms ``torch.export`` traces with any number of frames; the rest is exported as it is.

In PyTorch 2.11, ``torch.export`` traces ``nn.LSTM`` through its decomposition, which loops over
time in Python: the exported program only accepts the example's number of frames (strict and
non-strict export alike; pytorch/pytorch#191855). :func:`exportable` replaces each single-layer
unidirectional ``nn.LSTM`` of the split BiLSTM stack (:class:`~asr.model.lstm.SplitBiLSTM`) by one
of two modules holding the same weights, and leaves every other layer's code as it trains:

- :class:`ScanLSTM` (``.pt2``): the recurrence over ``torch._higher_order_ops.scan``, the loop
  primitive ``torch.export`` keeps symbolic; plain ATen ops, so the file loads with torch alone.
- :class:`OnnxLSTM` (``.onnx``): the custom op ``asr::lstm_layer``, which the ONNX exporter writes
  as ONNX's own ``LSTM`` node (:func:`lstm_layer_onnx`): ONNX Runtime runs its fused kernel and
  quantizes it to int8 (``DynamicQuantizeLSTM``). Weights are stored in ONNX's gate order (i, o, f, c).

Both compute ``nn.LSTM``'s function (zero initial state, batch-first ``(batch, frames, input)`` ->
``(batch, frames, hidden)``) within float rounding; export checks every file against the model.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from asr.model.acoustic import AcousticModel

# PyTorch's gate order is (input, forget, cell, output); ONNX's is (input, output, forget, cell).
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)


def _gates(weight: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """The four gate blocks of an LSTM weight or bias (first dimension ``4 * hidden``) reordered."""
    blocks = weight.chunk(4, dim=0)
    return torch.cat([blocks[i] for i in order], dim=0)


class ScanLSTM(nn.Module):
    """``nn.LSTM(input, hidden, batch_first=True)`` (one layer, one direction) as a scan over frames."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.hidden_size = lstm.hidden_size
        self.register_buffer("w_ih", lstm.weight_ih_l0.detach().clone())  # (4 * hidden, input)
        self.register_buffer("w_hh", lstm.weight_hh_l0.detach().clone())  # (4 * hidden, hidden)
        self.register_buffer("bias", (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().clone())  # (4 * hidden,)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        from torch._higher_order_ops.scan import scan  # private in 2.11: the loop torch.export keeps symbolic

        gates_x = (x @ self.w_ih.T + self.bias).transpose(0, 1)  # (frames, batch, 4 * hidden): all frames at once
        # Two tensors, not one twice: the tracer would read h and c as one value.
        h0, c0 = (x.new_zeros(x.shape[0], self.hidden_size) for _ in range(2))
        w_hh = self.w_hh.T  # read by the step from outside: torch.export lifts it into an input of the scan

        def step(carry: tuple[torch.Tensor, torch.Tensor], gx: torch.Tensor):
            h, c = carry
            i, f, g, o = (gx + h @ w_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return (h, c), h.clone()  # scan wants outputs that do not alias the carry

        _, outputs = scan(step, (h0, c0), gates_x)
        return outputs.transpose(0, 1), None


@torch.library.custom_op("asr::lstm_layer", mutates_args=())
def lstm_layer(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, hidden: int) -> torch.Tensor:
    """One unidirectional LSTM layer, zero initial state, with ONNX's weight layout: ``x`` (batch,
    frames, input); ``w`` (1, 4H, input), ``r`` (1, 4H, H), ``b`` (1, 8H) in gate order i, o, f, c."""
    weights = [_gates(w[0], ONNX_TO_TORCH_GATES), _gates(r[0], ONNX_TO_TORCH_GATES),
               _gates(b[0, : 4 * hidden], ONNX_TO_TORCH_GATES), _gates(b[0, 4 * hidden :], ONNX_TO_TORCH_GATES)]
    zeros = x.new_zeros(1, x.shape[0], hidden)
    # _VF.lstm(input, (h0, c0), params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return torch._VF.lstm(x, (zeros, zeros), weights, True, 1, 0.0, False, False, True)[0]


@lstm_layer.register_fake
def _lstm_layer_shape(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, hidden: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[1], hidden)


class OnnxLSTM(nn.Module):
    """``nn.LSTM(input, hidden, batch_first=True)`` (one layer, one direction) as ``asr::lstm_layer``."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.hidden_size = lstm.hidden_size
        order = TORCH_TO_ONNX_GATES
        self.register_buffer("w", _gates(lstm.weight_ih_l0.detach(), order)[None].clone())
        self.register_buffer("r", _gates(lstm.weight_hh_l0.detach(), order)[None].clone())
        bias = torch.cat([_gates(lstm.bias_ih_l0.detach(), order), _gates(lstm.bias_hh_l0.detach(), order)])
        self.register_buffer("b", bias[None].clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.ops.asr.lstm_layer(x, self.w, self.r, self.b, self.hidden_size), None


def lstm_layer_onnx(x, w, r, b, hidden: int):
    """``asr::lstm_layer`` as ONNX: one ``LSTM`` node (sequence first, so ONNX Runtime's int8
    ``DynamicQuantizeLSTM`` can replace it), between two transposes."""
    from onnxscript import opset18 as op

    sequence = op.Transpose(x, perm=[1, 0, 2])  # (frames, batch, input)
    y, _, _ = op.LSTM(sequence, w, r, b, hidden_size=hidden)  # (frames, 1, batch, hidden)
    return op.Transpose(op.Squeeze(y, op.Constant(value_ints=[1])), perm=[1, 0, 2])


ONNX_TRANSLATIONS: dict[Callable, Callable] = {torch.ops.asr.lstm_layer.default: lstm_layer_onnx}


def exportable(model: AcousticModel, form: type[ScanLSTM] | type[OnnxLSTM]) -> AcousticModel:
    """A copy of an inference model (split stack, eval mode) whose LSTMs are ``form``."""
    out = copy.deepcopy(model)
    for layer in out.rnn.layers:
        layer.fwd, layer.bwd = form(layer.fwd), form(layer.bwd)
    return out.eval()
