import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, audio_info, load_audio


def _tone(rate: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_format_rate_and_channels_becomes_mono_16k(tmp_path, fmt, subtype, rate, channels):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, _tone(rate, 0.5, channels), rate, subtype=subtype)
    wave = load_audio(path, 16000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - 8000) <= 2
    # a 440 Hz tone survives resampling: its energy is where it should be
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) * 16000 / wave.numel() - 440) < 5


def test_stereo_is_averaged(tmp_path):
    left = np.full(1600, 0.5)
    right = np.full(1600, -0.1)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    assert torch.allclose(load_audio(tmp_path / "s.wav"), torch.full((1600,), 0.2), atol=1e-6)


def test_info_reads_the_header(tmp_path):
    sf.write(tmp_path / "a.flac", _tone(8000, 1.25), 8000)
    info = audio_info(tmp_path / "a.flac")
    assert info.sample_rate == 8000 and info.channels == 1 and info.duration == pytest.approx(1.25)


def test_partial_read(tmp_path):
    sf.write(tmp_path / "a.wav", np.arange(16000) / 16000, 16000, subtype="FLOAT")
    part = load_audio(tmp_path / "a.wav", start=0.5, duration=0.25)
    assert part.numel() == 4000 and part[0] == pytest.approx(0.5)


@pytest.mark.parametrize("make,reason", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("this is not audio at all " * 20), "not a readable audio file"),
])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, make, reason):
    path = tmp_path / "bad.flac"
    make(path)
    with pytest.raises(AudioError, match=reason) as err:
        load_audio(path)
    assert str(err.value).startswith(str(path))
