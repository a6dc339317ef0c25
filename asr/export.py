"""Export: a checkpoint's acoustic model, feature extraction included -> one TorchScript file.

The exported module needs only ``torch`` (and torchaudio's ops that ``torch.jit.load`` finds
without importing asr)::

    m = torch.jit.load("model.ts")
    log_probs, frames = m(waveforms, lengths)  # (batch, samples) float32 at m.sample_rate, (batch,) int64
    # -> (batch, frames, vocab) log-probs, (batch,) valid frames
    symbols = json.loads(m.symbols)  # id -> symbol; id 0 is the CTC blank, " " the word boundary

``ScriptableAcousticModel`` is the model's inference path written so ``torch.jit.script`` can
compile it, sharing the trained modules (mel filterbank, convolutions, LSTMs, output layer):
log-mel of each waveform as if alone, per-utterance normalization over valid frames, the
subsampling convolutions with padding re-zeroed after each, a bidirectional LSTM whose backward
direction starts at each sequence's own last frame, log-softmax. ``export`` checks the compiled
module against the PyTorch model on a batch of different lengths, and the round-trip test does
the same after loading the file in a fresh interpreter: the largest log-prob difference must stay
within EXPORT_TOLERANCE.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from asr.checkpoint import load_checkpoint
from asr.model import AcousticModel
from asr.text import CharTokenizer

EXPORT_TOLERANCE = 1e-4  # largest |log-prob difference| accepted between the export and PyTorch (float32)
CHECK_SECONDS = (1.0, 2.7, 0.3)  # lengths of the random waveforms the export is checked on
_CHECK_SEED = 0
_PACKED = re.compile(r"lstm\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")  # one nn.LSTM
_SPLIT = re.compile(r"layers\.(\d+)\.(fwd|bwd)\.(weight_ih|weight_hh|bias_ih|bias_hh)_l0$")  # per-direction LSTMs


class ExportError(RuntimeError):
    """The export does not reproduce the model within EXPORT_TOLERANCE."""


def _direction_weights(rnn: nn.Module) -> dict[tuple[int, str], dict[str, torch.Tensor]]:
    """The recurrent stack's weights per (layer, "fwd" | "bwd"), whichever layout it stores."""
    out: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in rnn.state_dict().items():
        if m := _PACKED.match(key):
            kind, layer, reverse = m.groups()
            out.setdefault((int(layer), "bwd" if reverse else "fwd"), {})[f"{kind}_l0"] = value
        elif m := _SPLIT.match(key):
            layer, direction, kind = m.groups()
            out.setdefault((int(layer), direction), {})[f"{kind}_l0"] = value
        else:
            raise ExportError(f"unknown recurrent weight {key!r}; export knows nn.LSTM and split layouts")
    return out


class _Direction(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.bwd = nn.LSTM(input_size, hidden_size, batch_first=True)


class ScriptableAcousticModel(nn.Module):
    """``(batch, samples)`` waveforms + ``(batch,)`` lengths -> ``(batch, frames, vocab)`` log-probs + frames."""

    def __init__(self, model: AcousticModel, tokenizer: CharTokenizer) -> None:
        super().__init__()
        fc = model.feature_config
        self.mel = model.features.mel
        self.half_fft, self.hop, self.log_floor = fc.n_fft // 2, fc.hop_length, fc.log_floor
        self.normalize = fc.normalize == "utterance"
        self.convs = model.subsampling.blocks
        self.conv_kernels = [layer.kernel[0] for layer in model.subsampling.layers]
        self.conv_strides = [layer.stride[0] for layer in model.subsampling.layers]
        weights = _direction_weights(model.rnn)
        hidden, layers = model.model_config.hidden_size, 1 + max(layer for layer, _ in weights)
        sizes = [model.subsampling.output_size] + [2 * hidden] * (layers - 1)
        self.rnn = nn.ModuleList(_Direction(size, hidden) for size in sizes)
        for (layer, direction), state in weights.items():
            getattr(self.rnn[layer], direction).load_state_dict(state)
        self.head = model.head
        self.sample_rate: int = fc.sample_rate
        self.frame_rate: float = model.output_frame_rate
        self.symbols: str = json.dumps(tokenizer.symbols, ensure_ascii=False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = nn.functional.pad(waveforms.float(), (self.half_fft, self.half_fft))
        feats = torch.log(self.mel(padded) + self.log_floor)  # (batch, n_mels, frames)
        frames = torch.div(lengths, self.hop, rounding_mode="floor") + 1
        feats = feats[..., : waveforms.shape[-1] // self.hop + 1]
        mask = _mask(frames, feats.shape[-1])[:, None, :]
        if self.normalize:
            count = frames[:, None, None].to(feats.dtype)
            valid = feats.masked_fill(~mask, 0.0)
            mean = valid.sum(-1, keepdim=True) / count
            var = ((valid - mean).masked_fill(~mask, 0.0) ** 2).sum(-1, keepdim=True) / count
            feats = (feats - mean) * torch.rsqrt(var + 1e-5)
        x = feats.masked_fill(~mask, 0.0).transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, n_mels)
        for i, block in enumerate(self.convs):
            x = block(x)
            kernel, stride = self.conv_kernels[i], self.conv_strides[i]
            frames = torch.div(frames + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1
            x = x * _mask(frames, x.shape[2])[:, None, :, None].to(x.dtype)
        batch, channels, steps, freq = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, steps, channels * freq)
        t = torch.arange(steps, device=x.device)[None, :]
        flipped = frames[:, None] - 1 - t
        reverse = torch.where(flipped >= 0, flipped, t)[:, :, None]  # reverses each sequence within its length
        valid = _mask(frames, steps)[:, :, None].to(x.dtype)
        for layer in self.rnn:
            forward_out, _ = layer.fwd(x)
            backward_in = x.gather(1, reverse.expand(-1, -1, x.shape[-1]))
            backward_out, _ = layer.bwd(backward_in)
            backward_out = backward_out.gather(1, reverse.expand(-1, -1, backward_out.shape[-1]))
            x = torch.cat([forward_out, backward_out], dim=-1) * valid
        return self.head(x).float().log_softmax(-1), frames


def script(model: AcousticModel, tokenizer: CharTokenizer) -> torch.jit.ScriptModule:
    """``model`` (in eval mode) compiled with ``torch.jit.script``. TorchScript is deprecated in
    favour of ``torch.export``, which cannot yet trace this model with a dynamic number of samples
    (the feature frames are sliced with a Python int); the warning saying so is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning)
        return torch.jit.script(ScriptableAcousticModel(model.eval(), tokenizer).eval())


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def check_inputs(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of random waveforms of CHECK_SECONDS (different lengths, so padding is checked)."""
    gen = torch.Generator().manual_seed(_CHECK_SEED)
    lengths = torch.tensor([int(s * sample_rate) for s in CHECK_SECONDS])
    waves = 0.1 * torch.randn(len(lengths), int(lengths.max()), generator=gen)
    return waves * _mask(lengths, waves.shape[1]), lengths


def max_difference(reference: nn.Module, exported: torch.jit.ScriptModule, waves: torch.Tensor,
                   lengths: torch.Tensor) -> float:
    """Largest |log-prob difference| over the valid frames; ExportError if the frame counts differ."""
    with torch.inference_mode():
        expected, expected_frames = reference(waves, lengths)
        got, got_frames = exported(waves, lengths)
    if not torch.equal(expected_frames.cpu(), got_frames.cpu()):
        raise ExportError(f"frame counts differ: {expected_frames.tolist()} vs {got_frames.tolist()}")
    valid = _mask(expected_frames, expected.shape[1])
    return float((expected - got).abs()[valid].max()) if valid.any() else 0.0


def export_torchscript(checkpoint: str | os.PathLike, output: str | os.PathLike,
                       tolerance: float = EXPORT_TOLERANCE) -> float:
    """Compile a checkpoint's model to TorchScript, check it, save it; return the largest difference."""
    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval()
    scripted = script(model, loaded.tokenizer)
    diff = max_difference(model, scripted, *check_inputs(model.feature_config.sample_rate))
    if diff > tolerance:
        raise ExportError(f"{checkpoint}: the export differs from the model by {diff:.2e} (> {tolerance:.0e})")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    scripted.save(str(tmp))
    os.replace(tmp, output)  # atomic, as every file written for the user
    return diff
