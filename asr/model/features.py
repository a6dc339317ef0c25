"""Features: padded waveforms -> normalized log-mel filterbanks, computed on the model's device.

Feature extraction is the first stage of the model (``AcousticModel.features``), so training,
evaluation and decoding cannot drift apart and the extraction runs on the GPU, not in DataLoader
workers. Frames are computed so that padding never changes a real frame: each waveform is framed
as if it were alone (zeros beyond both ends), and statistics ignore padded frames. A batched
utterance therefore gets exactly the features it gets on its own.

Normalization (``FeatureConfig.normalize``): "utterance" (zero mean, unit variance per utterance
and mel bin: needs the whole utterance, so a stream can only estimate it), "global" (one mean and
deviation per mel bin for every input, measured on the training set before training starts and kept
in the model's state: frames are normalized one by one, so a stream gets exactly what a file gets),
or "none".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.transforms as T
from torch import nn

NORMALIZATIONS = ("utterance", "global", "none")
VARIANCE_FLOOR = 1e-5  # added to every variance before its square root


@dataclass
class FeatureConfig:
    """Log-mel front end. Times are in samples at ``sample_rate``."""

    sample_rate: int = 16_000  # Hz; audio is resampled to this on load
    n_fft: int = 512  # FFT size (samples)
    win_length: int = 400  # analysis window: 25 ms at 16 kHz
    hop_length: int = 160  # frame shift: 10 ms at 16 kHz, i.e. 100 frames per second
    n_mels: int = 80  # mel filters
    f_min: float = 20.0  # Hz
    f_max: float | None = None  # Hz; None = sample_rate / 2
    log_floor: float = 1e-6  # added to the mel energies before the log
    normalize: str = "utterance"  # "utterance": per utterance and mel bin | "global": training-set statistics | "none"
    global_stats_utterances: int = 1000  # normalize=global: training utterances its statistics are measured on

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length}: must be at most n_fft={self.n_fft}")
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < (self.f_max or nyquist) <= nyquist:
            raise ValueError(f"f_min={self.f_min}, f_max={self.f_max}: need 0 <= f_min < f_max <= sample_rate / 2 "
                             f"({nyquist:g} Hz; f_max null = sample_rate / 2)")
        if not self.log_floor > 0:
            raise ValueError(f"log_floor={self.log_floor}: must be positive")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize={self.normalize}: must be one of {', '.join(NORMALIZATIONS)}")
        if self.global_stats_utterances < 1:
            raise ValueError(f"global_stats_utterances={self.global_stats_utterances}: must be at least 1")

    @property
    def frame_rate(self) -> float:
        """Feature frames per second of audio."""
        return self.sample_rate / self.hop_length


@dataclass
class SpecAugmentConfig:
    """SpecAugment masking (Park et al. 2019), applied to features in training only."""

    freq_masks: int = 2  # number of frequency masks
    freq_width: int = 27  # maximum width of each, in mel bins
    time_masks: int = 2  # number of time masks
    time_width: int = 40  # maximum width of each, in frames
    # torchaudio's p: one mask covers at most this fraction of the axis it masks (the padded batch's
    # frames for time masks, the mel bins for frequency masks: with 40 mels, at most 8 bins)
    max_time_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if not 0 < self.max_time_fraction <= 1:
            raise ValueError(f"max_time_fraction={self.max_time_fraction}: must be in (0, 1]")


def frame_lengths(lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Valid feature frames for waveforms of ``lengths`` samples: ``(batch,)`` int64."""
    return torch.div(lengths, hop_length, rounding_mode="floor") + 1


def time_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(batch, max_length)`` bool, True on valid positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


class LogMel(nn.Module):
    """``(batch, samples)`` waveforms + lengths -> ``(batch, n_mels, frames)`` log-mel + frame lengths."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        # center=False on a zero-padded signal: frame t covers the same samples whatever the
        # padding of the batch (center=True would reflect at the batch's end, not the utterance's).
        self.mel = T.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, f_min=config.f_min, f_max=config.f_max,
            n_mels=config.n_mels, center=False, power=2.0,
        )
        # What forward reads, as plain attributes (TorchScript does not read the config).
        self.hop_length, self.log_floor = config.hop_length, config.log_floor
        self.normalize = config.normalize == "utterance"
        self.global_normalize = config.normalize == "global"
        # The training set's statistics (set_global_stats), saved with the weights when used; the
        # buffers exist either way so that TorchScript compiles both branches of forward.
        keep = self.global_normalize
        self.register_buffer("global_mean", torch.zeros(config.n_mels), persistent=keep)
        self.register_buffer("global_scale", torch.ones(config.n_mels), persistent=keep)  # 1 / deviation
        self.register_buffer("global_frames", torch.zeros((), dtype=torch.int64), persistent=keep)  # 0: not measured
        # The STFT as a strided convolution with the windowed DFT basis (cosines, then sines, of the
        # n_fft // 2 + 1 bins), the window centred in the n_fft frame as torch.stft places it: the
        # same numbers as self.mel's spectrogram (within float rounding), real-valued all the way
        # (ONNX has no complex tensors) and faster than ONNX Runtime's STFT. Not in the state dict.
        self.window_offset = (config.n_fft - config.win_length) // 2
        bins = torch.arange(config.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * bins * (torch.arange(config.win_length, dtype=torch.float64) + self.window_offset) / config.n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * self.mel.spectrogram.window.double()
        self.register_buffer("dft", basis.float()[:, None, :], persistent=False)  # (2 * bins, 1, win_length)
        self.bins = config.n_fft // 2 + 1
        # Zeros around the waveform: frame t is centred on sample t * hop_length as in torch.stft, and
        # a waveform of n samples gives exactly n // hop_length + 1 frames (no slicing by length,
        # which torch.export could not prove in bounds).
        self.pad_left = config.n_fft // 2 - self.window_offset
        self.pad_right = config.win_length - self.pad_left
        self.variance_floor = VARIANCE_FLOOR  # an attribute, so TorchScript sees a constant, not a global

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.jit.is_scripting():  # int8 TorchScript export: no autocast to turn off (it wants a constant device)
            feats = self._log_mel(waveforms)
        else:
            with torch.autocast(waveforms.device.type, enabled=False):  # float32 under mixed precision
                feats = self._log_mel(waveforms)
        n_frames = frame_lengths(lengths, self.hop_length)
        mask = time_mask(n_frames, feats.shape[-1])[:, None, :]  # (batch, 1, frames)
        if self.normalize:
            feats = _normalize(feats, mask, n_frames, self.variance_floor)
        elif self.global_normalize:
            feats = self.normalize_frames(feats)
        return feats.masked_fill(~mask, 0.0), n_frames

    def normalize_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames)`` log-mel -> normalized with the global statistics."""
        return (feats - self.global_mean[:, None]) * self.global_scale[:, None]

    @torch.no_grad()
    def set_global_stats(self, total: torch.Tensor, squares: torch.Tensor, frames: int) -> None:
        """The global statistics from per-bin sums of log-mel values and of their squares over
        ``frames`` frames (:meth:`frame_sums`, added up over a sample of the training set)."""
        mean = total.double() / frames
        var = (squares.double() / frames - mean * mean).clamp_min(0)
        self.global_mean.copy_(mean.float())
        self.global_scale.copy_(torch.rsqrt(var + VARIANCE_FLOOR).float())
        self.global_frames.fill_(frames)

    @torch.no_grad()
    def frame_sums(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per mel bin, the sum of the log-mel values and of their squares over the valid frames
        of a batch, in float64 ``(n_mels,)``, and the number of frames."""
        with torch.autocast(waveforms.device.type, enabled=False):
            feats = self._log_mel(waveforms).double()
        n_frames = frame_lengths(lengths, self.hop_length)
        valid = feats.masked_fill(~time_mask(n_frames, feats.shape[-1])[:, None, :], 0.0)
        return valid.sum((0, 2)), (valid * valid).sum((0, 2)), int(n_frames.sum())
    def _log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames)``: each waveform framed as if alone (zeros beyond both ends)."""
        return self.log_mel_frames(nn.functional.pad(waveforms.float(), (self.pad_left, self.pad_right)))

    def log_mel_frames(self, samples: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` -> ``(batch, n_mels, frames)`` log-mel, unnormalized: frame ``t`` reads
        samples ``t * hop_length`` to ``t * hop_length + win_length`` (no padding added here)."""
        parts = nn.functional.conv1d(samples.float()[:, None], self.dft, stride=self.hop_length)
        real, imag = parts[:, : self.bins], parts[:, self.bins :]
        power = real * real + imag * imag  # |X|^2: (batch, bins, frames)
        return torch.log(self.mel.mel_scale(power) + self.log_floor)


def _normalize(feats: torch.Tensor, mask: torch.Tensor, n_frames: torch.Tensor, floor: float) -> torch.Tensor:
    """Zero mean, unit variance per utterance and mel bin, over valid frames only."""
    count = n_frames[:, None, None].to(feats.dtype)
    valid = feats.masked_fill(~mask, 0.0)
    mean = valid.sum(-1, keepdim=True) / count
    var = ((valid - mean).masked_fill(~mask, 0.0) ** 2).sum(-1, keepdim=True) / count
    return (feats - mean) * torch.rsqrt(var + floor)


class SpecAugment(nn.Module):
    """Random frequency and time masks on ``(batch, n_mels, frames)``; identity in eval mode."""

    def __init__(self, config: SpecAugmentConfig) -> None:
        super().__init__()
        self.augment = T.SpecAugment(
            n_time_masks=config.time_masks, time_mask_param=config.time_width,
            n_freq_masks=config.freq_masks, freq_mask_param=config.freq_width,
            iid_masks=True, p=config.max_time_fraction, zero_masking=True,
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.augment(feats) if self.training else feats
