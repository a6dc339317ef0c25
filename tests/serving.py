"""Helpers of the server tests and benchmarks/serve_load.py: a streamable random-weight checkpoint,
varied audio, ``scripts/serve.py`` run as a process on a free port, and a protocol client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from tests.conftest import ROOT
from tests.streams import tones  # noqa: F401 (test_serve imports it from here)

RATE = 16_000
START_TIMEOUT = 120.0  # seconds for the server process to load and listen (2 busy cores)
FRAME_SECONDS = 0.02


def streaming_checkpoint(path: Path, chunk: float = 0.3, right_context: float = 0.2) -> Path:
    """A chunked model with random weights that emit many symbols and blanks (tests/test_streaming.py's),
    saved as a checkpoint."""
    from asr.model import AcousticModel, FeatureConfig, ModelConfig
    from asr.model.checkpoint import checkpoint_metadata
    from asr.text import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    model = AcousticModel(len(tokenizer), FeatureConfig(n_mels=40, normalize="global"),
                          ModelConfig(rnn_layers=2, hidden_size=64, chunk=chunk, right_context=right_context)).eval()
    model.features.set_global_stats(torch.full((40,), -500.0), torch.full((40,), 3000.0), 100)
    with torch.no_grad():
        model.head.weight.mul_(30)
        model.head.bias[0] += 0.5  # blanks
        model.head.bias[1] += 2.0  # spaces
    torch.save({"asr": checkpoint_metadata(model, tokenizer, {}),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def s16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()


class ServerProcess:
    """``scripts/serve.py CKPT --port 0 ARGS`` as a process; ``url`` once it listens. Its stderr is kept."""

    def __init__(self, checkpoint: Path, *args: str, threads: int = 1) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, str(ROOT / "scripts" / "serve.py"), str(checkpoint), "--port", "0",
               "--threads", str(threads), *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        listening = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                found = re.search(r"listening on (http://\S+?)/? ", line)
                if found:
                    self.url = found.group(1)
                    listening.set()
            listening.set()

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(START_TIMEOUT) or not self.url:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.lines))
        self.ws_url = self.url.replace("http://", "ws://") + "/stream"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def stream_audio(ws_url: str, data: bytes, config: dict | None = None, frame_bytes: int = 3200,
                       pace: float = 0.0, eof: bool = True) -> tuple[list[dict], int | None, str]:
    """Send ``data`` in frames (``pace`` seconds apart), then eof; the server's messages until it closes,
    and its close code and reason."""
    import websockets

    messages = []
    async with websockets.connect(ws_url, max_size=None) as ws:
        if config is not None:
            await ws.send(json.dumps(config))
        for i in range(0, len(data), frame_bytes):
            await ws.send(data[i : i + frame_bytes])
            if pace:
                await _sleep(pace)
        if eof:
            await ws.send(json.dumps({"eof": True}))
        try:
            async for message in ws:
                messages.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
    return messages, ws.close_code, ws.close_reason


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
