"""How a server runs: ``scripts/serve.py``'s flags -> :class:`ServerSettings` (no FastAPI needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass

from asr.inference.stream import DEFAULT_ENDPOINT

DEFAULT_MAX_STREAMS = 200
DEFAULT_IDLE_TIMEOUT = 60.0  # seconds without a client message before a stream is closed
DEFAULT_MAX_WAIT = 0.02  # seconds a stream's new audio waits for other streams' before a batched step
DEFAULT_DRAIN_TIMEOUT = 30.0  # seconds the open streams get to finish at shutdown


@dataclass
class ServerSettings:
    """What the server's routes and engine are told."""

    model: str = ""  # a name for /health (the checkpoint's file name)
    max_streams: int = DEFAULT_MAX_STREAMS  # streams and file transcriptions at once
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_wait: float = DEFAULT_MAX_WAIT
    chunk: float | None = None  # streaming latency, seconds (None: the model's, or the recognizer's defaults)
    right_context: float | None = None
    endpoint: float = DEFAULT_ENDPOINT  # seconds of pause after speech that end a line
    record_dir: str | None = None  # each stream's audio, as received, is written there
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
