"""Acoustic model: waveforms -> CTC log-probabilities over the tokenizer's symbols.

    waveforms (batch, samples) + lengths
      -> LogMel features (batch, n_mels, frames)            [asr.model.features]
      -> SpecAugment (training only)
      -> ConvSubsampling (batch, frames / stride, channels * mels / freq_stride)
      -> BiLSTM stack (batch, frames / stride, 2 * hidden) [asr.model.lstm; chunked: asr.model.chunked]
      -> Linear + log_softmax (batch, frames / stride, vocab)

Every length is derived from the layers' own parameters, and padding is masked after every
layer that could leak it, so a padded batch gives each utterance the output it gets alone.
The model knows nothing of decoding or text; it returns log-probs and their lengths, always.
Its forward pass is also what ``asr.inference.export`` traces (``torch.export``, the ONNX exporter;
``torch.jit.script`` for int8 TorchScript): the layers' forwards read plain attributes only (no
config objects), so the code that trains is the code that is deployed, the LSTMs' kernels aside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from asr.model.features import FeatureConfig, LogMel, SpecAugment, SpecAugmentConfig, time_mask
from asr.model.chunked import chunked_forward
from asr.model.lstm import RNN_IMPLS, SplitBiLSTM, build_rnn


@dataclass
class ConvLayer:
    """One 2-D convolution over (time, mel) with batch norm and ReLU."""

    channels: int
    kernel: tuple[int, int]  # (time, freq)
    stride: tuple[int, int]  # (time, freq)

    def __post_init__(self) -> None:
        self.kernel, self.stride = tuple(self.kernel), tuple(self.stride)  # a config gives lists
        if self.channels < 1:
            raise ValueError(f"conv channels={self.channels}: must be at least 1")
        for name in ("kernel", "stride"):
            value = getattr(self, name)
            if len(value) != 2 or min(value) < 1:
                raise ValueError(f"conv {name}={list(value)}: must be two numbers >= 1, [time, mel]")


def _default_conv() -> list[ConvLayer]:
    # Time stride 3 in all: 33 output frames/s, two per character of fast speech.
    return [ConvLayer(16, (5, 3), (3, 2)), ConvLayer(16, (3, 3), (1, 2))]


@dataclass
class ModelConfig:
    """Sizes of the acoustic model (the front end is in FeatureConfig). The defaults are the small
    model (4.0 M parameters with 40 mels) that trains on 2 CPU cores: asr/conf/model/small.yaml."""

    conv: list[ConvLayer] = field(default_factory=_default_conv)
    rnn_layers: int = 3
    hidden_size: int = 256  # LSTM units per direction
    dropout: float = 0.1  # between LSTM layers and before the output layer
    rnn_impl: str = "auto"  # auto (= split) | split: per-direction LSTMs, fast on GPUs | packed: nn.LSTM on packed sequences
    # Latency-controlled BiLSTM (asr.model.chunked), for streaming: the LSTMs read chunks of `chunk`
    # seconds, each with `right_context` seconds after it; 0: whole utterances (not streamable).
    chunk: float = 0.0
    right_context: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rnn_layers", "hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.rnn_impl not in RNN_IMPLS:
            raise ValueError(f"rnn_impl={self.rnn_impl}: must be one of {', '.join(RNN_IMPLS)}")
        if self.chunk < 0 or self.right_context < 0:
            raise ValueError(f"chunk={self.chunk}, right_context={self.right_context}: seconds, at least 0")
        if self.right_context > 0 and self.chunk == 0:
            raise ValueError(f"right_context={self.right_context} needs a chunk (model.chunk, seconds); chunk=0 reads "
                             "whole utterances")
        if self.chunk > 0 and self.rnn_impl == "packed":
            raise ValueError("chunk: the chunked LSTM is the split stack's; set rnn_impl=split (or auto)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["conv"] = [ConvLayer(c["channels"], tuple(c["kernel"]), tuple(c["stride"])) for c in d.get("conv", [])]
        return cls(**d)


class ConvSubsampling(nn.Module):
    """``(batch, n_mels, frames)`` + lengths -> ``(batch, frames', channels * mels')`` + lengths'."""

    def __init__(self, n_mels: int, layers: list[ConvLayer]) -> None:
        super().__init__()
        self.layers = layers
        blocks, in_ch, freq = [], 1, n_mels
        for layer in layers:
            kt, kf = layer.kernel
            blocks.append(nn.Sequential(
                nn.Conv2d(in_ch, layer.channels, layer.kernel, layer.stride, padding=(kt // 2, kf // 2)),
                nn.BatchNorm2d(layer.channels),
                nn.ReLU(),
            ))
            in_ch, freq = layer.channels, _conv_out(freq, kf, layer.stride[1])
        self.blocks = nn.ModuleList(blocks)
        self.time_kernels = [layer.kernel[0] for layer in layers]  # what forward reads (TorchScript)
        self.time_strides = [layer.stride[0] for layer in layers]
        self.output_size = in_ch * freq if layers else n_mels
        self.time_stride = 1
        for layer in layers:
            self.time_stride *= layer.stride[0]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return subsampled_lengths(lengths, self.time_kernels, self.time_strides)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, n_mels)
        for i, block in enumerate(self.blocks):
            x = block(x)
            lengths = _conv_out(lengths, self.time_kernels[i], self.time_strides[i])
            # Zero the padded frames so the next kernel sees what a lone utterance would see.
            x = x * time_mask(lengths, x.shape[2])[:, None, :, None]
        batch, channels, frames, freq = x.shape
        return x.permute(0, 2, 1, 3).reshape(batch, frames, channels * freq), lengths


def subsampled_lengths(lengths: torch.Tensor, kernels: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Frames left after convolutions of these time kernels and strides (padding ``kernel // 2``)."""
    for kernel, stride in zip(kernels, strides):
        lengths = _conv_out(lengths, kernel, stride)
    return lengths


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, int, int]:
    """``(stride, left, right)``: output frame ``j`` of these convolutions (padding ``kernel // 2``)
    reads input frames ``j * stride - left`` to ``j * stride + right``."""
    stride, left, right = 1, 0, 0
    for kernel, step in zip(kernels, strides):
        pad = kernel // 2
        left, right = pad * stride + left, (kernel - 1 - pad) * stride + right
        stride *= step
    return stride, left, right


def _conv_out(size: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Output size of a convolution with padding ``kernel // 2``: int64 tensor (or an int)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class AcousticModel(nn.Module):
    """``(batch, samples)`` waveforms + lengths -> ``(batch, frames, vocab)`` log-probs + frame lengths."""

    __jit_unused_properties__ = ["output_frame_rate"]  # torch.jit.script compiles forward only

    def __init__(
        self,
        vocab_size: int,
        features: FeatureConfig | None = None,
        model: ModelConfig | None = None,
        specaugment: SpecAugmentConfig | None = None,
    ) -> None:
        super().__init__()
        self.feature_config = features or FeatureConfig()
        self.model_config = model or ModelConfig()
        cfg = self.model_config
        self.features = LogMel(self.feature_config)
        self.specaugment = SpecAugment(specaugment) if specaugment else nn.Identity()
        self.subsampling = ConvSubsampling(self.feature_config.n_mels, cfg.conv)
        self.rnn = build_rnn(cfg.rnn_impl, self.subsampling.output_size, cfg.hidden_size, cfg.rnn_layers, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.rnn.output_size, vocab_size)
        self.chunk_frames, self.right_frames = 0, 0  # output frames; 0: whole utterances
        self.set_latency(cfg.chunk, cfg.right_context)

    def set_latency(self, chunk: float, right_context: float = 0.0) -> None:
        """Read the LSTMs in chunks of ``chunk`` seconds, each with ``right_context`` seconds after it
        (0: whole utterances). A model trained on whole utterances can stream this way too, at the
        accuracy benchmarks/streaming.py measures. Rounded to whole output frames, at least one."""
        if chunk > 0 and not isinstance(self.rnn, SplitBiLSTM):
            raise ValueError("the chunked LSTM is the split stack's: build the model with rnn_impl=split "
                             "(a packed model's weights load into it)")
        rate = self.output_frame_rate
        self.chunk_frames = max(1, round(chunk * rate)) if chunk > 0 else 0
        self.right_frames = round(right_context * rate) if chunk > 0 else 0

    @property
    def output_frame_rate(self) -> float:
        """Output frames per second of audio."""
        return self.feature_config.frame_rate / self.subsampling.time_stride

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, n_frames = self.features(waveforms, lengths)  # (batch, n_mels, frames)
        feats = self.specaugment(feats)
        x, n_out = self.subsampling(feats, n_frames)  # (batch, frames', conv features)
        x = self._chunked_rnn(x, n_out) if self.chunk_frames > 0 else self.rnn(x, n_out)  # (batch, frames', 2 * hidden)
        logits = self.head(self.dropout(x))  # (batch, frames', vocab)
        return logits.float().log_softmax(-1), n_out

    # TorchScript exports are of whole-utterance models. No annotations: TorchScript reads the
    # stub of an unused method without resolving this module's (postponed) annotations; Tensor
    # is what it assumes for each argument and the result.
    @torch.jit.unused
    def _chunked_rnn(self, x, lengths):  # (batch, frames', features), (batch,) -> (batch, frames', 2 * hidden)
        return chunked_forward(self.rnn, x, lengths, self.chunk_frames, self.right_frames)

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this architecture (weights aside)."""
        return {"features": asdict(self.feature_config), "model": asdict(self.model_config),
                "vocab_size": self.head.out_features}

    @classmethod
    def from_config_dict(cls, d: dict[str, Any]) -> AcousticModel:
        return cls(d["vocab_size"], FeatureConfig(**d["features"]), ModelConfig.from_dict(d["model"]))
