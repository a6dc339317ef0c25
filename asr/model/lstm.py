"""The recurrent stack: ``(batch, frames, features)`` + lengths -> ``(batch, frames, 2 * hidden)``.

A stack of bidirectional LSTM layers with exact semantics on padded batches: the backward
direction of every sequence starts at its own last valid frame, never in the padding, so an
utterance's output does not depend on what it is batched with. Outputs at padded frames are zero.

Two implementations compute the same function with the same parameters (``build_rnn`` picks one):

- ``SplitBiLSTM`` ("split", the default): each layer is two single-layer unidirectional
  ``nn.LSTM``; the forward one reads the padded batch as it is, the backward one reads each
  sequence reversed within its own length (an index gather), and its output is reversed back.
  Everything stays on the device: no lengths go to the host, so the stack never waits for the GPU.
  Single-layer unidirectional fp16 LSTMs are the only ones for which cuDNN uses its persistent
  kernels (hidden and input sizes multiples of 128, hidden <= 1024, batch a multiple of 8 and at
  most 128 on sm_80+ GPUs; ``get_algo`` in PyTorch's ``aten/src/ATen/native/cudnn/RNN.cpp``). Split
  layers ran 1.7-3.4x faster than ``nn.LSTM(bidirectional=True)`` on an H100 at batch <= 64 (issue 5;
  ``benchmarks/gpu_throughput.py`` measures it on your GPU).
- ``PackedBiLSTM`` ("packed"): one ``nn.LSTM(bidirectional=True, num_layers=N)`` over a packed
  sequence, as deepspeech.pytorch does. ``pack_padded_sequence`` needs the lengths on the host.

Both hold their weights in the same order and shapes (only the names differ), and each loads a
state dict written by the other: ``convert_rnn_state_dict`` renames, and every stack applies it
to whatever it is asked to load, so a checkpoint trained with one runs with the other.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.model.features import time_mask

RNN_IMPLS = ("auto", "packed", "split")
# "auto" means split on every device: cuDNN runs it fastest, and on CPU (oneDNN) it trained the
# small model 2.6x faster than packed (benchmarks/README.md, "CPU: packed vs split").
AUTO_IMPL = "split"

# cuDNN's persistent LSTM kernels need the batch to be a multiple of this on sm_80+ GPUs (see the
# module docstring); the split stack pads a CUDA batch up to it with empty sequences (not measured yet).
CUDNN_PERSIST_BATCH_MULTIPLE = 8
CUDNN_PERSIST_MAX_BATCH = 128  # no padding beyond this: persistent kernels are not used there

_PACKED_KEY = re.compile(r"lstm\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
_SPLIT_KEY = re.compile(r"layers\.(\d+)\.(fwd|bwd)\.(weight_ih|weight_hh|bias_ih|bias_hh)_l0$")


def reverse_index(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(batch, max_length)`` int64 time index that reverses each sequence within its own length.

    Position ``t < length`` maps to ``length - 1 - t``; padded positions map to themselves. The
    permutation is its own inverse, so the same index reverses the outputs back.
    """
    t = torch.arange(max_length, device=lengths.device)[None, :]
    flipped = lengths[:, None] - 1 - t
    return torch.where(flipped >= 0, flipped, t)


def reverse_sequences(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(batch, frames, features)`` reordered along time by ``reverse_index``: whole frames are
    picked (index_select of rows, cheaper than a gather with the index spread over the features)."""
    batch, frames = index.shape
    rows = (index + torch.arange(batch, device=index.device)[:, None] * frames).reshape(-1)
    return x.reshape(batch * frames, x.shape[-1]).index_select(0, rows).reshape(batch, frames, x.shape[-1])


class _BiLSTMBase(nn.Module):
    """What both stacks share: sizes, ``output_size`` and loading either weight layout."""

    impl: str

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"model.rnn_layers must be at least 1, got {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.register_load_state_dict_pre_hook(_convert_on_load)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size


class PackedBiLSTM(_BiLSTMBase):
    """Bidirectional LSTM stack via one ``nn.LSTM`` on packed sequences (lengths go to the host).

    Args:
        input_size: features per input frame.
        hidden_size: units per direction; the output has ``2 * hidden_size`` features.
        num_layers: stacked bidirectional layers.
        dropout: dropout between layers (training only).
    """

    impl = "packed"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class _DirectionPair(nn.Module):
    """One bidirectional layer: a forward and a backward single-layer unidirectional LSTM."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.bwd = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, reverse: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        forward_out, _ = self.fwd(x)  # padding comes after the valid frames: it cannot reach them
        backward_out, _ = self.bwd(reverse_sequences(x, reverse))  # starts at each sequence's last frame
        out = torch.cat([forward_out, reverse_sequences(backward_out, reverse)], dim=-1)
        return out * valid[:, :, None].to(out.dtype)  # (batch, frames, 2 * hidden), zero on padding


class SplitBiLSTM(_BiLSTMBase):
    """Bidirectional LSTM stack built from single-layer unidirectional LSTMs; no host sync.

    Args: as :class:`PackedBiLSTM`.
    """

    impl = "split"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, num_layers, dropout)
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(_DirectionPair(size, hidden_size) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, frames = x.shape[:2]
        lengths = lengths.to(x.device, non_blocking=True)
        if x.is_cuda:  # cuDNN's persistent kernels need a batch that is a multiple of 8
            x, lengths = pad_batch(x, lengths)
        reverse, valid = reverse_index(lengths, frames), time_mask(lengths, frames)
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)  # as nn.LSTM: between layers, not after the last
            x = layer(x, reverse, valid)
        return x[:batch]


def pad_batch(x: torch.Tensor, lengths: torch.Tensor, multiple: int = CUDNN_PERSIST_BATCH_MULTIPLE,
              limit: int = CUDNN_PERSIST_MAX_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Add empty sequences (zeros, length 0) up to a batch that is a multiple of ``multiple``,
    unless that would exceed ``limit``."""
    missing = -x.shape[0] % multiple
    if missing == 0 or x.shape[0] + missing > limit:
        return x, lengths
    return nn.functional.pad(x, (0, 0, 0, 0, 0, missing)), nn.functional.pad(lengths, (0, missing))


def training_flops_per_frame(input_size: int, hidden_size: int, num_layers: int) -> int:
    """Matmul FLOPs to train a BiLSTM stack on one frame: forward, backward and weight gradients.

    Per bidirectional layer ``48 * H * (I + H)``: 2 directions x 4 gates x (I + H) x H multiply-adds
    x 2 FLOPs each x 3 (the backward pass costs twice the forward). Gate nonlinearities, biases and
    the elementwise cell update are left out (under 1% at the sizes we train).
    """
    sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
    return sum(48 * hidden_size * (size + hidden_size) for size in sizes)


def build_rnn(impl: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0) -> nn.Module:
    """The recurrent stack named by ``impl`` ("auto" = AUTO_IMPL, "packed" or "split")."""
    if impl not in RNN_IMPLS:
        raise ValueError(f"model.rnn_impl must be one of {', '.join(RNN_IMPLS)}; got {impl!r}")
    cls = SplitBiLSTM if (AUTO_IMPL if impl == "auto" else impl) == "split" else PackedBiLSTM
    return cls(input_size, hidden_size, num_layers, dropout)


def convert_rnn_state_dict(state: Mapping[str, Any], to: str, prefix: str = "") -> dict[str, Any]:
    """Rename the recurrent weights under ``prefix`` to the layout of ``to`` ("packed" or "split").

    Other keys, and keys already in the target layout, are kept as they are; values are not copied.
    """
    if to not in ("packed", "split"):
        raise ValueError(f"to must be 'packed' or 'split', got {to!r}")
    converted = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        converted[prefix + _renamed(name, to) if name is not None else key] = value
    return converted


def _renamed(name: str, to: str) -> str:
    if to == "split" and (m := _PACKED_KEY.match(name)):
        kind, layer, reverse = m.groups()
        return f"layers.{layer}.{'bwd' if reverse else 'fwd'}.{kind}_l0"
    if to == "packed" and (m := _SPLIT_KEY.match(name)):
        layer, direction, kind = m.groups()
        return f"lstm.{kind}_l{layer}{'_reverse' if direction == 'bwd' else ''}"
    return name


def _convert_on_load(module: _BiLSTMBase, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: accept the other implementation's weight names (in place)."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    renamed = convert_rnn_state_dict({k: state_dict[k] for k in keys}, module.impl, prefix)
    for key in keys:
        del state_dict[key]
    state_dict.update(renamed)
