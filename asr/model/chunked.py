"""Latency-controlled BiLSTM: the split stack read chunk by chunk, so that it can stream.

In: a :class:`~asr.model.lstm.SplitBiLSTM`'s input ``(batch, frames, features)`` and lengths, cut
into chunks of ``chunk`` frames, each read with the ``right`` frames after it (its window, ``chunk +
right`` frames). Out: ``(batch, frames, 2 * hidden)`` as the stack's own forward, zero on padding.

Per layer (Zhang et al. 2016, "latency-controlled BLSTM"; neural_sp's ``_forward_latency_controlled``):

- the forward direction reads the chunks in order, its state ``(h, c)`` carried from the end of one
  chunk to the start of the next; over a chunk's right-context frames it continues from the state at
  the chunk's end, and that continuation is dropped (the next chunk starts from the chunk's end);
- the backward direction starts from zero at the end of each window (or at the sequence's last
  frame, if it ends inside the window) and reads the window backward;
- the next layer reads the whole window, right context included, so the look-ahead stays ``right``
  frames however many layers there are; only the chunk's own frames are kept at the end.

Training and streaming run the same function, :func:`run_windows`: training cuts whole sequences into
windows (:func:`to_windows`) and starts every forward direction from zero; a stream passes one window
per call with the states its previous call returned. With one chunk covering the whole sequence and no
right context, the result is the bidirectional stack's own (up to float rounding).
"""

from __future__ import annotations

import torch
from torch import nn

from asr.model.features import time_mask
from asr.model.lstm import SplitBiLSTM, reverse_index, reverse_sequences


def to_windows(x: torch.Tensor, lengths: torch.Tensor, chunk: int, right: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, frames, features)`` -> windows ``(batch, chunks, chunk + right, features)`` (zeros
    past the end) and the valid frames of each window ``(batch, chunks)`` int64."""
    batch, frames, features = x.shape
    chunks = max(1, -(-frames // chunk))
    padded = nn.functional.pad(x, (0, 0, 0, chunks * chunk + right - frames))
    windows = padded.unfold(1, chunk + right, chunk)[:, :chunks]  # (batch, chunks, features, window)
    starts = torch.arange(chunks, device=lengths.device) * chunk
    valid = (lengths[:, None] - starts[None, :]).clamp(0, chunk + right)
    return windows.transpose(2, 3), valid


def from_windows(windows: torch.Tensor, chunk: int, frames: int) -> torch.Tensor:
    """The chunks' own frames of ``(batch, chunks, window, features)`` as ``(batch, frames, features)``."""
    batch, chunks, _, features = windows.shape
    return windows[:, :, :chunk].reshape(batch, chunks * chunk, features)[:, :frames]


def zero_state(stack: SplitBiLSTM, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-direction states ``(h, c)``, each ``(layers, batch, hidden)``, at the start of a sequence."""
    zeros = like.new_zeros(stack.num_layers, batch, stack.hidden_size)
    return zeros, zeros.clone()


def run_windows(stack: SplitBiLSTM, windows: torch.Tensor, valid: torch.Tensor, chunk: int,
                state: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Windows ``(batch, chunks, chunk + right, features)`` with their valid frames ``(batch, chunks)``
    -> outputs ``(batch, chunks, chunk + right, 2 * hidden)`` (a window's right-context frames as
    this window saw them) and the forward states ``(h, c)`` after the last chunk's own frames,
    each ``(layers, batch, hidden)``. ``state``: the states to start from (None: zeros)."""
    batch, chunks, width, _ = windows.shape
    h0, c0 = state if state is not None else zero_state(stack, batch, windows)
    mask = time_mask(valid.reshape(-1), width).reshape(batch, chunks, width, 1)
    reverse = reverse_index(valid.reshape(-1), width)
    x, last_h, last_c = windows, [], []
    for i, layer in enumerate(stack.layers):
        if i > 0:
            x = stack.dropout(x)
        h, c = h0[i : i + 1], c0[i : i + 1]
        own, ends_h, ends_c = [], [], []
        for k in range(chunks):  # the forward state flows from chunk to chunk
            out, (h, c) = layer.fwd(x[:, k, :chunk], (h, c))
            own.append(out)
            ends_h.append(h)
            ends_c.append(c)
        forward = torch.stack(own, 1)  # (batch, chunks, chunk, hidden)
        if width > chunk:  # right context: from each chunk's end state, then dropped
            hk = torch.cat(ends_h).transpose(0, 1).reshape(1, batch * chunks, -1)
            ck = torch.cat(ends_c).transpose(0, 1).reshape(1, batch * chunks, -1)
            ahead, _ = layer.fwd(x[:, :, chunk:].reshape(batch * chunks, width - chunk, x.shape[-1]), (hk, ck))
            forward = torch.cat([forward, ahead.reshape(batch, chunks, width - chunk, -1)], 2)
        flat = x.reshape(batch * chunks, width, x.shape[-1])
        backward, _ = layer.bwd(reverse_sequences(flat, reverse))  # from each window's last valid frame
        backward = reverse_sequences(backward, reverse).reshape(batch, chunks, width, -1)
        x = torch.cat([forward, backward], -1) * mask.to(forward.dtype)
        last_h.append(h)
        last_c.append(c)
    return x, (torch.cat(last_h), torch.cat(last_c))


def chunked_forward(stack: SplitBiLSTM, x: torch.Tensor, lengths: torch.Tensor, chunk: int,
                    right: int) -> torch.Tensor:
    """The stack over whole sequences, latency-controlled: ``(batch, frames, features)`` + lengths ->
    ``(batch, frames, 2 * hidden)``, zero on padding."""
    windows, valid = to_windows(x, lengths.to(x.device), chunk, right)
    out, _ = run_windows(stack, windows, valid, chunk)
    return from_windows(out, chunk, x.shape[1])
