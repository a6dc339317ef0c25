"""Audio files -> mono float32 waveforms at the model's sample rate.

``load_audio(path, sample_rate)`` reads any format libsndfile knows (WAV, FLAC, OGG/Vorbis,
NIST SPHERE, MP3 with libsndfile >= 1.1) with soundfile, averages the channels to mono and
resamples with torchaudio. torchaudio 2.9+ no longer decodes audio by itself, hence soundfile.

A :class:`Segment` (a span of a longer file: NeMo's ``offset``, a Lhotse cut) goes wherever a path
goes: ``audio_info`` and ``load_audio`` read it as if it were a file of its own. ``decode_audio``
decodes bytes already in memory (a member of a shard). :class:`StreamResampler` resamples audio
that arrives in pieces (a stream), giving the samples the whole recording's resampling gives;
:func:`pcm_pieces` reads a pipe of WAV or raw PCM as it arrives.

Every failure is an :class:`AudioError` whose message starts with the file's path, so a corpus
loader can report it and skip the file, and a CLI can print it as one line.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000  # Hz: the default input rate of the models


class AudioError(Exception):
    """An audio file that cannot be used: missing, empty, corrupt or not audio at all."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples."""

    sample_rate: int  # Hz
    frames: int  # samples per channel
    channels: int

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class Segment:
    """``duration`` seconds of ``path`` from ``start`` (seconds): read as a file of its own."""

    path: str
    start: float = 0.0
    duration: float | None = None  # None: to the end of the file

    def __fspath__(self) -> str:  # where a path is expected, the file it is part of
        return self.path

    def __str__(self) -> str:
        end = "end" if self.duration is None else f"{self.start + self.duration:.3f}"
        return f"{self.path}[{self.start:.3f}-{end} s]"


Source = str | os.PathLike | Segment  # what the readers below take


def audio_info(path: Source) -> AudioInfo:
    """Read a file's header: sample rate, length and channels. Raises AudioError."""
    if isinstance(path, Segment):
        info = audio_info(path.path)
        first = min(int(round(path.start * info.sample_rate)), info.frames)
        frames = info.frames - first if path.duration is None else int(round(path.duration * info.sample_rate))
        if min(frames, info.frames - first) <= 0:
            raise AudioError(path, f"the segment lies outside the file ({info.duration:.3f} s)")
        return AudioInfo(info.sample_rate, min(frames, info.frames - first), info.channels)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not a readable audio file ({_short(err)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "contains no audio samples")
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


def load_audio(
    path: Source,
    sample_rate: int | None = SAMPLE_RATE,
    start: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode a file to a mono waveform.

    Args:
        path: the audio file, or a Segment of one (``start`` and ``duration`` are then within it).
        sample_rate: resample to this rate in Hz; ``None`` keeps the file's own rate.
        start, duration: read only this span, in seconds of the file (for long recordings).

    Returns:
        float32 tensor of shape ``(samples,)`` with values in [-1, 1].
    """
    if isinstance(path, Segment):
        end = None if path.duration is None else path.duration
        if duration is not None:
            end = start + duration if end is None else min(end, start + duration)
        try:
            return load_audio(path.path, sample_rate, path.start + start, None if end is None else max(0.0, end - start))
        except AudioError as err:
            raise AudioError(path, err.reason) from None
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            f.seek(min(int(round(start * rate)), f.frames))
            frames = -1 if duration is None else int(round(duration * rate))
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not a readable audio file ({_short(err)})") from None
    if data.size == 0 and start == 0.0:
        raise AudioError(path, "contains no audio samples")
    return _mono(data, rate, sample_rate, path)


def decode_audio(data: bytes, sample_rate: int | None = SAMPLE_RATE, name: str = "<bytes>") -> torch.Tensor:
    """Audio file bytes (FLAC, WAV, ...) -> a mono waveform, as ``load_audio``; ``name`` says where
    they come from in an AudioError."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(name, f"not readable audio ({_short(err)})") from None
    if samples.size == 0:
        raise AudioError(name, "contains no audio samples")
    return _mono(samples, rate, sample_rate, name)


def _mono(data: np.ndarray, rate: int, sample_rate: int | None, path: Source) -> torch.Tensor:
    """``(frames, channels)`` samples -> a mono waveform at ``sample_rate``."""
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    waveform = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sample_rate is not None and rate != sample_rate:
        waveform = resample(waveform, rate, sample_rate)
    return waveform


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling of ``(..., samples)`` from ``orig_rate`` to ``new_rate`` Hz."""
    if orig_rate == new_rate:
        return waveform
    return AF.resample(waveform, orig_rate, new_rate)


PCM_BLOCK_SECONDS = 0.1  # audio per piece read from a pipe


def pcm_pieces(stream: BinaryIO, raw_rate: int | None = None, name: str = "<stdin>") -> tuple[int, Iterator[torch.Tensor]]:
    """A pipe of audio -> its sample rate and its mono float32 samples in pieces of about
    PCM_BLOCK_SECONDS, read as they arrive: a WAV stream (16-bit or 32-bit integer, or 32-bit float;
    ``arecord -f S16_LE -r 16000``, ``ffmpeg ... -f wav -``: the header's data size is not trusted), or
    raw 16-bit little-endian PCM at ``raw_rate`` (``ffmpeg ... -f s16le -ac 1 -ar 16000 -``).
    AudioError for a stream that is neither."""
    head = _read_exactly(stream, 12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        rate, channels, dtype = _wav_header(stream, name)
    elif raw_rate:
        rate, channels, dtype = raw_rate, 1, np.dtype("<i2")
    else:
        raise AudioError(name, "not a WAV stream; for raw 16-bit PCM give its sample rate (--raw-rate 16000)")
    frame = channels * dtype.itemsize
    block = max(1, round(rate * PCM_BLOCK_SECONDS)) * frame

    def pieces() -> Iterator[torch.Tensor]:
        rest = b"" if head[:4] == b"RIFF" else head
        while True:
            data = rest + (stream.read(block) or b"")
            if len(data) < frame:
                return
            usable = len(data) - len(data) % frame
            rest = data[usable:]
            samples = np.frombuffer(data[:usable], dtype=dtype).reshape(-1, channels).astype(np.float32)
            if dtype.kind == "i":
                samples /= float(2 ** (8 * dtype.itemsize - 1))
            yield torch.from_numpy(samples.mean(axis=1))

    return rate, pieces()


def _wav_header(stream: BinaryIO, name: str) -> tuple[int, int, np.dtype]:
    """The chunks after ``RIFF....WAVE`` up to ``data``: sample rate, channels and sample type."""
    fmt = None
    while True:
        chunk = _read_exactly(stream, 8)
        if len(chunk) < 8:
            raise AudioError(name, "WAV stream ended before its data")
        size = int.from_bytes(chunk[4:8], "little")
        if chunk[:4] == b"data":
            break
        body = _read_exactly(stream, size + size % 2)
        if chunk[:4] == b"fmt ":
            fmt = body
    if fmt is None:
        raise AudioError(name, "WAV stream without a fmt chunk")
    tag, channels, rate = int.from_bytes(fmt[0:2], "little"), int.from_bytes(fmt[2:4], "little"), \
        int.from_bytes(fmt[4:8], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
        tag = int.from_bytes(fmt[24:26], "little")
    types = {(1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4"}
    if (tag, bits) not in types or channels < 1 or rate < 1:
        raise AudioError(name, f"WAV stream of format {tag}, {bits} bits: use 16-bit or 32-bit PCM, or 32-bit float")
    return rate, channels, np.dtype(types[tag, bits])


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


# torchaudio's resample defaults, which StreamResampler's context is sized from
LOWPASS_FILTER_WIDTH, ROLLOFF = 6, 0.99


class StreamResampler:
    """Samples arriving in pieces at ``orig_rate`` -> the same signal at ``new_rate``, the samples of
    :func:`resample` over the whole recording (within float rounding), each as soon as the input
    around it has arrived.

    torchaudio resamples in blocks: every ``orig / gcd`` input samples give ``new / gcd`` output
    samples, read from the input around the block. Blocks are computed once enough input on both
    sides of them is here, with whole blocks of left context so that they line up with the whole
    recording's; :meth:`finish` pads zeros after the end, as :func:`resample` does.
    """

    def __init__(self, orig_rate: int, new_rate: int) -> None:
        g = math.gcd(orig_rate, new_rate)
        self.orig_rate, self.new_rate = orig_rate, new_rate
        self.block_in, self.block_out = orig_rate // g, new_rate // g
        width = math.ceil(LOWPASS_FILTER_WIDTH * self.block_in / (ROLLOFF * min(self.block_in, self.block_out)))
        self.context = math.ceil((width + 1) / self.block_in) + 1  # blocks of context on each side
        self.pending = torch.zeros(self.context * self.block_in)  # input from block `next - context` on
        self.next = 0  # the next block to output
        self.received = 0

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """Add input; return the output samples that are now final (maybe none)."""
        if self.orig_rate == self.new_rate:
            return samples
        self.pending = torch.cat([self.pending, samples.float().reshape(-1)])
        self.received += samples.numel()
        return self._blocks(self.pending.numel() // self.block_in - 2 * self.context)

    def finish(self) -> torch.Tensor:
        """The output's last samples (the input's end is padded with zeros)."""
        if self.orig_rate == self.new_rate:
            return torch.zeros(0)
        total = math.ceil(self.new_rate * self.received / self.orig_rate)
        blocks_needed = -(-total // self.block_out) - self.next
        self.pending = torch.cat([self.pending, torch.zeros((blocks_needed + self.context + 1) * self.block_in)])
        out = self._blocks(blocks_needed)
        return out[: max(0, total - (self.next - blocks_needed) * self.block_out)]

    def _blocks(self, n: int) -> torch.Tensor:
        if n <= 0:
            return torch.zeros(0)
        span = (n + 2 * self.context) * self.block_in
        out = AF.resample(self.pending[:span], self.block_in, self.block_out)
        self.pending = self.pending[n * self.block_in:]
        self.next += n
        return out[self.context * self.block_out: (self.context + n) * self.block_out]


def _check_file(path: str | os.PathLike) -> None:
    p = Path(path)
    if not p.exists():
        raise AudioError(path, "no such file")
    if not p.is_file():
        raise AudioError(path, "not a file")
    if p.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _short(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
