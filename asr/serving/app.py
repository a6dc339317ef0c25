"""The FastAPI app and its server: HTTP requests and WebSockets in, JSON out.

In: a :class:`~asr.inference.recognizer.Recognizer` of a training checkpoint and
:class:`ServerSettings`. Out: an ASGI app with ``/stream`` (WebSocket, :mod:`asr.serving.connection`),
``POST /transcribe`` (an audio file in the body, or the first file of a multipart form -> its text
and words), ``GET /health`` and ``GET /`` (the web page in ``static/``); and :func:`serve`, which runs
it with uvicorn until SIGTERM or SIGINT, then finishes the open streams (as if each had sent eof)
before it returns.

At most ``max_streams`` streams and file transcriptions run at once; one more is refused: a
WebSocket is closed with 1013 and a reason, a request answered 503 with a JSON error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from asr.audio import AudioError, decode_audio
from asr.inference.recognizer import Emission, Recognizer
from asr.inference.windows import run_windows
from asr.serving.connection import Connection
from asr.serving.engine import BatchEngine
from asr.serving.protocol import GOING_AWAY, TRY_AGAIN_LATER, close_reason, error_message, word_dict
from asr.serving.settings import ServerSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DRAIN_POLL = 0.05  # seconds between looks at the streams still open at shutdown
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one WebSocket message: 20 s of 48 kHz float32 audio
MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # one POST /transcribe body
OK, BAD_REQUEST, TOO_LARGE, UNAVAILABLE = 200, 400, 413, 503


class Hub:
    """What the routes share: the engine, the count of open streams and transcriptions, the shutdown."""

    def __init__(self, recognizer: Recognizer, settings: ServerSettings) -> None:
        self.recognizer, self.settings = recognizer, settings
        self.engine = BatchEngine(recognizer, settings.chunk, settings.right_context, settings.endpoint,
                                  settings.max_wait, settings.record_dir)
        self.files = ThreadPoolExecutor(1, thread_name_prefix="asr-serving-files")  # one file at a time
        self.active = 0
        self.stopping = False
        self.connections: set[Connection] = set()

    def acquire(self) -> str | None:
        """Take a slot; or say why not."""
        if self.stopping:
            return "the server is shutting down"
        if self.active >= self.settings.max_streams:
            return f"server busy: all {self.settings.max_streams} streams in use; try again later"
        self.active += 1
        return None

    def release(self) -> None:
        self.active -= 1

    async def drain(self) -> None:
        """Refuse new work; end every stream's input; wait (up to drain_timeout) for them and the files."""
        self.stopping = True
        for connection in list(self.connections):
            connection.end_input()
        deadline = time.monotonic() + self.settings.drain_timeout
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL)

    def health(self) -> dict[str, Any]:
        e = self.engine
        return {"status": "stopping" if self.stopping else "ok", "model": self.settings.model,
                "streams": {"active": self.active, "max": self.settings.max_streams},
                "sample_rate": e.sample_rate, "chunk": round(e.chunk_seconds, 3),
                "right_context": round(e.right_seconds, 3), "latency": round(e.latency, 3),
                "engine": e.stats.as_dict()}

    def transcribe(self, data: bytes, name: str) -> dict[str, Any]:
        """Audio file bytes -> the recognizer's transcript of the file, with words."""
        r = self.recognizer
        waveform = decode_audio(data, r.sample_rate, name)
        duration = waveform.numel() / r.sample_rate
        if duration <= r.windows.window:
            transcript = r.decode(Emission(name, run_windows(r.runner, [waveform], r.tokenizer.blank)[0], duration),
                                  words=True)
        else:  # a long recording is read in windows from a file, as decode.py does
            import soundfile as sf

            with tempfile.NamedTemporaryFile(suffix=".wav") as f:
                sf.write(f.name, waveform.numpy(), r.sample_rate, subtype="FLOAT")
                transcript = r.transcribe(f.name, words=True)
        return {"text": transcript.text, "duration": round(duration, 3),
                "words": [word_dict(w) for w in transcript.words]}


def create_app(recognizer: Recognizer, settings: ServerSettings) -> FastAPI:
    hub = Hub(recognizer, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.engine.start()
        try:
            yield
        finally:
            hub.engine.stop()
            hub.files.shutdown()

    app = FastAPI(title="asr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return hub.health()

    @app.post("/transcribe")
    async def transcribe(request: Request) -> JSONResponse:
        refused = hub.acquire()
        if refused:
            return JSONResponse(error_message(UNAVAILABLE, refused), UNAVAILABLE)
        try:
            data, name = await _upload(request)
            result = await asyncio.get_running_loop().run_in_executor(hub.files, hub.transcribe, data, name)
            return JSONResponse(result, OK)
        except _BadUpload as err:
            return JSONResponse(error_message(err.status, str(err)), err.status)
        except AudioError as err:
            return JSONResponse(error_message(BAD_REQUEST, str(err)), BAD_REQUEST)
        finally:
            hub.release()

    @app.websocket("/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        refused = hub.acquire()
        if refused:
            code = GOING_AWAY if hub.stopping else TRY_AGAIN_LATER
            await ws.send_json(error_message(code, refused))
            await ws.close(code, close_reason(refused))
            return
        connection = Connection(ws, hub.engine, settings.idle_timeout)
        hub.connections.add(connection)
        try:
            await connection.run()
        finally:
            hub.connections.discard(connection)
            hub.release()

    return app


class _BadUpload(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _upload(request: Request) -> tuple[bytes, str]:
    """The audio of a POST: the body, or the first file of a multipart form."""
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
        raise _BadUpload(TOO_LARGE, f"the audio is over {MAX_UPLOAD_BYTES // 2**20} MiB")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
        files = [v for v in form.values() if hasattr(v, "read")]
        if not files:
            raise _BadUpload(BAD_REQUEST, "a multipart form without a file: send the audio as a file field")
        return await files[0].read(), files[0].filename or "<upload>"
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_UPLOAD_BYTES:
            raise _BadUpload(TOO_LARGE, f"the audio is over {MAX_UPLOAD_BYTES // 2**20} MiB")
    if not body:
        raise _BadUpload(BAD_REQUEST, "no audio: send an audio file (WAV, FLAC, OGG, ...) as the request body")
    return bytes(body), "<upload>"


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, whose first SIGTERM or SIGINT finishes the open streams before it stops (a
    second one stops at once); the signal is not raised again after, so the process exits 0."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.draining or self.loop is None:
            self.force_exit = self.draining  # a second signal: stop now
            self.should_exit = True
            return
        self.draining = True
        self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        await self.hub.drain()
        self.should_exit = True


def serve(app: FastAPI, sock: socket.socket, log_level: str = "warning") -> None:
    """Run ``app`` on a bound socket until a signal, then finish its streams."""
    config = uvicorn.Config(app, log_level=log_level, ws_max_size=MAX_MESSAGE_BYTES, ws_per_message_deflate=False,
                            timeout_graceful_shutdown=1)
    _GracefulServer(config, app.state.hub).run(sockets=[sock])
