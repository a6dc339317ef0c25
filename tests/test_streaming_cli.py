"""``decode.py --stream``: WAV or raw PCM on stdin -> text lines or JSON lines as the audio arrives."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.inference.recognizer import load
from asr.model.checkpoint import CHECKPOINT_KEY, checkpoint_metadata
from asr.text import CharTokenizer
from tests.conftest import ROOT
from tests.streams import tone_tensor
from tests.test_streaming import model  # noqa: F401 (a fixture)

RATE = 16_000


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """The varied random-weight chunked model of test_streaming, as a checkpoint file."""
    path = tmp_path_factory.mktemp("stream-cli") / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                CHECKPOINT_KEY: checkpoint_metadata(model, CharTokenizer(), {})}, path)
    return path


def _decode(checkpoint, stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/decode.py", str(checkpoint), "--stream", "-", *args], cwd=ROOT,
                          input=stdin, capture_output=True, timeout=120)


def _wav(audio: torch.Tensor, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio.numpy(), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_a_wav_stream_on_stdin_gives_json_lines_ending_with_the_streams_text(checkpoint):
    audio = torch.from_numpy(np.round(tone_tensor(6.0, 11).numpy() * 32767) / 32767).float()  # as 16-bit PCM stores it
    run = _decode(checkpoint, _wav(audio), "--format", "jsonl", "--endpoint", "0")
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in run.stdout.decode().splitlines()]
    stream = load(checkpoint, device="cpu").stream(endpoint=0)
    stream.accept(audio)
    stream.finish()
    assert rows[-1]["final"] and rows[-1]["text"] == stream.text and len(stream.text.split()) > 3
    assert [w["word"] for row in rows for w in row["words"]] == stream.text.split()
    assert any(row["words"] for row in rows[:-1]) and any(row["partial"] for row in rows)
    assert "latency" in run.stderr.decode()


def test_raw_pcm_needs_its_rate_and_text_lines_go_to_a_pipe_at_each_endpoint(checkpoint):
    audio = tone_tensor(4.0, 12)
    raw = (audio.numpy() * 32767).astype("<i2").tobytes()
    refused = _decode(checkpoint, raw)
    assert refused.returncode != 0
    assert refused.stderr.decode().strip().splitlines()[-1] == \
        "decode.py: error: <stdin>: not a WAV stream; for raw 16-bit PCM give its sample rate (--raw-rate 16000)"
    silence = np.zeros(int(1.5 * RATE), dtype="<i2").tobytes()  # a pause: the first line ends
    run = _decode(checkpoint, raw + silence + raw, "--raw-rate", "16000", "--format", "txt")
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    lines = run.stdout.decode().splitlines()
    assert len(lines) >= 2 and all(lines) and "\r" not in run.stdout.decode()  # whole lines only, into a pipe
