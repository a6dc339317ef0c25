"""One WebSocket stream: client messages in -> audio handed to the engine; the engine's messages out.

In: the messages of one accepted WebSocket (:mod:`asr.serving.protocol`). Out: the stream's JSON
messages, then a close: 1000 after the final message, or the code and reason of what went wrong
(a protocol error, ``idle_timeout`` seconds without a message, an engine failure). A client that
leaves is dropped from the engine. Two tasks: the receiver only parses and enqueues (the engine's
thread resamples and computes); the sender writes what the engine delivered, in order.
"""

from __future__ import annotations

import asyncio
import json

from starlette.websockets import WebSocket

from asr.serving.engine import BatchEngine, Session
from asr.serving.protocol import (
    EOF,
    NORMAL,
    POLICY,
    ProtocolError,
    StreamConfig,
    close_reason,
    decode_pcm,
    error_message,
    parse_text,
)

MAX_BACKLOG = 10.0  # seconds of a stream's audio not yet computed before its receiver stops reading
BACKLOG_POLL = 0.01  # seconds between looks at a full backlog
DISCONNECTED, STOPPED = "disconnected", "stopped"  # why the receiver returned


class Connection:
    """A stream's two tasks (see the module docstring); ``run`` returns when the socket is done."""

    def __init__(self, ws: WebSocket, engine: BatchEngine, idle_timeout: float) -> None:
        self.ws, self.engine, self.idle_timeout = ws, engine, idle_timeout
        self.session: Session | None = None
        self.ended = False  # the client sent eof, or the server is shutting down
        self.out: asyncio.Queue = asyncio.Queue()  # lists of messages, or a ProtocolError
        loop = asyncio.get_running_loop()
        self._deliver = lambda item: loop.call_soon_threadsafe(self.out.put_nowait, item)

    async def run(self) -> None:
        receiver = asyncio.create_task(self._receive())
        sender = asyncio.create_task(self._send())
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done and receiver.result() == STOPPED:
                await sender  # it sends the error and closes
        finally:
            for task in (receiver, sender):
                task.cancel()
            if self.session is not None:
                self.engine.drop(self.session)

    def end_input(self) -> None:
        """As if the client had sent eof (the server is shutting down)."""
        if not self.ended:
            self.ended = True
            if self.session is None:
                self._open(StreamConfig())
            self.engine.end(self.session)

    # --- receiving ---------------------------------------------------------------------------------

    async def _receive(self) -> str:
        idle = self.idle_timeout
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), None if self.ended else idle)
            except asyncio.TimeoutError:
                return self._stop(ProtocolError(POLICY, f"idle: no message for {idle:g} s"))
            except Exception:  # the socket is gone
                return DISCONNECTED
            if message["type"] == "websocket.disconnect":
                return DISCONNECTED
            if self.ended:
                continue  # after eof nothing more is read
            try:
                self._handle(message)
            except ProtocolError as err:
                return self._stop(err)
            while self.session is not None and self.session.backlog > MAX_BACKLOG and not self.ended:
                await asyncio.sleep(BACKLOG_POLL)  # the engine is behind: stop reading this socket a while

    def _handle(self, message: dict) -> None:
        if message.get("text") is not None:
            parsed = parse_text(message["text"], self.engine.sample_rate, audio_started=self.session is not None)
            if parsed == EOF:
                self.end_input()
            else:
                self._open(parsed)
        elif message.get("bytes") is not None:
            if self.session is None:
                self._open(StreamConfig())
            samples = decode_pcm(message["bytes"], self.config.format)
            if samples.size:
                self.engine.push(self.session, samples)

    def _open(self, config: StreamConfig) -> None:
        self.config = config
        self.session = self.engine.open(config.sample_rate, self._deliver)

    def _stop(self, err: ProtocolError) -> str:
        if self.session is not None:
            self.engine.drop(self.session)
        self.out.put_nowait(err)
        return STOPPED

    # --- sending -----------------------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            item = await self.out.get()
            try:
                if isinstance(item, ProtocolError):
                    await self.ws.send_text(json.dumps(error_message(item.code, item.reason)))
                    await self.ws.close(item.code, close_reason(item.reason))
                    return
                for message in item:
                    await self.ws.send_text(json.dumps(message))
                    if message.get("final"):
                        await self.ws.close(NORMAL, "done")
                        return
            except Exception:  # the client left while we were writing
                return
