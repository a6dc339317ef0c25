"""The batched inference loop: audio of many streams in, each stream's messages out.

In: float32 samples per stream (:meth:`BatchEngine.push`, from the event loop), the end of a stream's
input (:meth:`~BatchEngine.end`) or its disconnection (:meth:`~BatchEngine.drop`). Out: lists of
protocol messages (:mod:`asr.serving.protocol`) given to each stream's ``deliver`` callback, from the
engine's thread (the caller makes it thread-safe).

One thread owns the model. When a stream's audio arrives, it waits ``max_wait`` seconds for the
audio of other streams, then feeds every stream's new audio to it and advances all those that now
have the audio of a whole chunk (chunk + right context + the convolutions' look-ahead), or their end,
with one ``step_streams`` call: their features, then their chunks through the LSTMs as one batch.
The others wait for their chunk: a step before it would only compute features in small pieces (4
times the CPU of stepping each stream once per chunk, measured on the default small model). While a
step runs, newly arrived audio waits for the next one, so under load the batches grow by
themselves. A stream gets a message after a step that made more of its model output final (every
``chunk`` of audio), and its final message after its end.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from asr.inference.recognizer import Recognizer
from asr.inference.stream import DEFAULT_ENDPOINT, Stream, StreamUpdate, step_streams
from asr.serving.protocol import INTERNAL_ERROR, ProtocolError, endpoint_message, final_message, update_message
from asr.serving.settings import DEFAULT_MAX_WAIT

log = logging.getLogger(__name__)

Deliver = Callable[[Any], None]  # given a list of message dicts, or a ProtocolError that ends the stream


@dataclass
class EngineStats:
    """What the loop has done since it started (read by /health)."""

    steps: int = 0
    streams_stepped: int = 0  # summed over steps: streams_stepped / steps is the mean batch
    busy: float = 0.0  # seconds spent feeding and stepping, wall clock
    cpu: float = 0.0  # the same, CPU seconds of the engine's thread (torch's own threads not counted)

    def as_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "streams_stepped": self.streams_stepped,
                "mean_streams_per_step": round(self.streams_stepped / max(1, self.steps), 2),
                "busy_seconds": round(self.busy, 3), "cpu_seconds": round(self.cpu, 3),
                "process_cpu_seconds": round(time.process_time(), 3)}


def next_chunk_samples(stream: Stream) -> int:
    """Samples (at the model's rate) a stream needs before its next chunk can run (its engine's
    ``next_chunk_samples``: a StreamingModel or a streaming ONNX export)."""
    return stream.engine.next_chunk_samples(stream.state)


class Session:
    """One stream's place in the engine; made by :meth:`BatchEngine.open`."""

    def __init__(self, number: int, stream: Stream, deliver: Deliver, record: bool) -> None:
        self.number, self.stream, self.deliver = number, stream, deliver
        self.pending: list[np.ndarray] = []  # audio not yet fed (guarded by the engine's lock)
        self.pending_samples = 0
        self.ended = False  # no more audio will come
        self.closed = False  # the engine's thread has closed the stream's input
        self.gone = False  # finished, failed or dropped: nothing more is computed or delivered
        self.emitted = 0  # model output frames reported so far
        self.line: list[str] = []  # words since the last endpoint
        self.recorded: list[np.ndarray] | None = [] if record else None

    @property
    def backlog(self) -> float:
        """Seconds of audio received and not yet fed to the model."""
        return self.pending_samples / self.stream.sample_rate


class BatchEngine:
    """Streams of one recognizer, stepped together in one thread (see the module docstring).

    Args:
        recognizer: a recognizer of a training checkpoint (streams run in PyTorch).
        chunk, right_context, endpoint: the streams' (``Recognizer.stream``).
        max_wait: seconds new audio waits for other streams' before a step.
        record_dir: if given, each stream's audio, as received, is written there at its end
            (``stream-<number>.wav``, float32 at the client's rate).
    """

    def __init__(self, recognizer: Recognizer, chunk: float | None = None, right_context: float | None = None,
                 endpoint: float = DEFAULT_ENDPOINT, max_wait: float = DEFAULT_MAX_WAIT,
                 record_dir: str | Path | None = None) -> None:
        self.recognizer, self.endpoint, self.max_wait = recognizer, endpoint, max_wait
        self.chunk, self.right_context = chunk, right_context
        probe = recognizer.stream(None, chunk, right_context, endpoint)  # builds the streaming model once, here
        model = probe.engine
        self.sample_rate = model.sample_rate
        self.latency = model.latency
        self.chunk_seconds = model.chunk / probe.frame_rate
        self.right_seconds = model.right_frames / probe.frame_rate
        self.record_dir = Path(record_dir) if record_dir else None
        if self.record_dir:
            self.record_dir.mkdir(parents=True, exist_ok=True)
        self.stats = EngineStats()
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._ready: dict[int, Session] = {}  # sessions with new audio or a new end, in arrival order
        self._first_ready = 0.0  # when the oldest of them arrived (time.monotonic)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- called from the event loop --------------------------------------------------------------

    def open(self, sample_rate: int, deliver: Deliver) -> Session:
        stream = self.recognizer.stream(sample_rate, self.chunk, self.right_context, self.endpoint)
        return Session(next(self._numbers), stream, deliver, self.record_dir is not None)

    def push(self, session: Session, samples: np.ndarray) -> None:
        """Audio for a session (float32, at its sample rate)."""
        with self._cond:
            if session.ended or session.gone:
                return
            session.pending.append(samples)
            session.pending_samples += samples.size
            self._mark(session)

    def end(self, session: Session) -> None:
        """No more audio: the session's final message comes after the next step."""
        with self._cond:
            if not session.ended and not session.gone:
                session.ended = True
                self._mark(session)

    def drop(self, session: Session) -> None:
        """Forget a session (its client left): nothing more is computed or delivered."""
        with self._cond:
            session.gone = True
            session.pending, session.pending_samples = [], 0
            self._ready.pop(session.number, None)

    def _mark(self, session: Session) -> None:
        if not self._ready:
            self._first_ready = time.monotonic()
        self._ready.setdefault(session.number, session)
        self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="asr-serving-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Step what is waiting, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # --- the engine's thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                wait = self._first_ready + self.max_wait - time.monotonic()
            if wait > 0 and not self._stopping:
                time.sleep(wait)  # audio of other streams joins this step meanwhile
            with self._cond:
                work = [(s, s.pending, s.ended) for s in self._ready.values()]
                for s, _, _ in work:
                    s.pending, s.pending_samples = [], 0
                self._ready.clear()
            self._step(work)

    def _step(self, work: list[tuple[Session, list[np.ndarray], bool]]) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            self._feed_and_step(work)
        finally:
            self.stats.busy += time.perf_counter() - started
            self.stats.cpu += time.thread_time() - started_cpu

    def _feed_and_step(self, work: list[tuple[Session, list[np.ndarray], bool]]) -> None:
        live = []
        for session, pieces, ended in work:
            if session.gone:
                continue
            try:
                if pieces:
                    audio = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                    session.stream.feed(torch.from_numpy(audio))
                    if session.recorded is not None:
                        session.recorded.append(audio)
                if ended and not session.closed:
                    session.stream.close_input()
                    session.closed = True
            except Exception as err:  # e.g. a resampler failing on odd input: this stream only
                self._fail(session, err)
                continue
            if session.closed or session.stream.state.received >= next_chunk_samples(session.stream):
                live.append(session)  # the others wait: a step before their next chunk gives no update
        if not live:
            return
        try:
            updates = step_streams([s.stream for s in live])
        except Exception as err:  # a model failure: the streams of this step end, the server goes on
            for session in live:
                self._fail(session, err)
            return
        self.stats.steps += 1
        self.stats.streams_stepped += len(live)
        for session, update in zip(live, updates):
            self._report(session, update)

    def _report(self, session: Session, update: StreamUpdate) -> None:
        stream = session.stream
        emitted = stream.state.emitted
        if not (update.words or update.endpoint or update.final or emitted > session.emitted):
            return
        session.emitted = emitted
        decoded = min(emitted / stream.frame_rate, update.seconds)
        messages = [update_message(update.words, update.partial, update.seconds, decoded)]
        session.line += [w.word for w in update.words]
        if update.endpoint:
            messages.append(endpoint_message(" ".join(session.line), update.seconds))
            session.line = []
        if update.final:
            messages.append(final_message(stream.text, update.seconds))
            session.gone = True
            self._save(session)
        session.deliver(messages)

    def _fail(self, session: Session, err: Exception) -> None:
        log.exception("stream %d failed", session.number, exc_info=err)
        session.gone = True
        session.deliver(ProtocolError(INTERNAL_ERROR, f"internal error: {type(err).__name__}"))

    def _save(self, session: Session) -> None:
        if session.recorded is None or self.record_dir is None:
            return
        import soundfile as sf

        audio = np.concatenate(session.recorded) if session.recorded else np.zeros(0, np.float32)
        sf.write(self.record_dir / f"stream-{session.number:06d}.wav", audio, session.stream.sample_rate,
                 subtype="FLOAT")
        session.recorded = None
