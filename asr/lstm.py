"""The recurrent stack: ``(batch, frames, features)`` + lengths -> ``(batch, frames, 2 * hidden)``.

``BiLSTM`` is a stack of bidirectional LSTM layers with exact semantics on padded batches: the
backward direction of every sequence starts at its own last valid frame, never in the padding,
so an utterance's output does not depend on what it is batched with. Outputs at padded frames
are zero.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLSTM(nn.Module):
    """Bidirectional LSTM stack over padded batches, via ``nn.LSTM`` on packed sequences.

    Args:
        input_size: features per input frame.
        hidden_size: units per direction; the output has ``2 * hidden_size`` features.
        num_layers: stacked bidirectional layers.
        dropout: dropout between layers (training only).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out
