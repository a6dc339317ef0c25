"""The streaming protocol: client messages -> a stream config, PCM samples, end of input; stream
updates -> the server's JSON messages. README.md's "Server protocol" section is its description.

Client to server, on one WebSocket: optionally first a text message ``{"sample_rate": 48000,
"format": "f32"}`` (defaults 16000 and ``s16``), then binary frames of little-endian mono PCM
(``s16``: int16, ``f32``: float32 in [-1, 1]), then the text message ``{"eof": true}``.
Server to client: ``update_message`` (committed words, the partial text after them),
``endpoint_message`` (a line is over), ``final_message`` (the whole transcript; the last message),
``error_message`` (then the socket closes with ``code`` and the same reason).
Anything that breaks the protocol raises :class:`ProtocolError` with its close code and reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.inference.alignment import Word

DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_FORMAT = "s16"
# format -> (numpy dtype of a little-endian sample, full scale: samples are divided by it)
FORMATS = {"s16": ("<i2", 32768.0), "f32": ("<f4", 1.0)}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
# Resampling to the model's rate works in blocks of 1 / gcd(rates) seconds: a longer block is latency.
MAX_RESAMPLE_BLOCK = 0.05  # seconds
CONFIG_KEYS = {"sample_rate", "format"}
TIME_DECIMALS = 3  # seconds are rounded to milliseconds in messages
CONFIDENCE_DECIMALS = 4

# WebSocket close codes (RFC 6455, section 7.4.1; 1013 from the IANA registry)
NORMAL = 1000  # the stream is done: the final message was sent
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003  # a frame that cannot be read: not JSON, a bad byte count, non-finite samples
POLICY = 1008  # a readable message that breaks the protocol: bad config values, config after audio, idle
INTERNAL_ERROR = 1011  # the server failed on this stream
TRY_AGAIN_LATER = 1013  # at capacity, or shutting down
MAX_REASON_BYTES = 123  # a close frame's reason, UTF-8


class ProtocolError(Exception):
    """A message that ends the stream: close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class StreamConfig:
    """The client's first message: its audio's sample rate and sample format."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    format: str = DEFAULT_FORMAT


EOF = "eof"  # what parse_text returns for {"eof": true}


def parse_text(text: str, model_rate: int, audio_started: bool) -> StreamConfig | str:
    """A text message -> a StreamConfig (allowed only before any audio) or EOF."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError(UNSUPPORTED_DATA, "text messages must be JSON: a config or {\"eof\": true}") from None
    if not isinstance(message, dict):
        raise ProtocolError(UNSUPPORTED_DATA, "text messages must be JSON objects: a config or {\"eof\": true}")
    if "eof" in message:
        if message != {"eof": True}:
            raise ProtocolError(POLICY, "the end of input is exactly {\"eof\": true}")
        return EOF
    unknown = sorted(set(message) - CONFIG_KEYS)
    if unknown:
        raise ProtocolError(POLICY, f"unknown field {unknown[0][:40]!r}: a config has sample_rate and format")
    if audio_started:
        raise ProtocolError(POLICY, "the config must come before any audio")
    rate = message.get("sample_rate", DEFAULT_SAMPLE_RATE)
    fmt = message.get("format", DEFAULT_FORMAT)
    if fmt not in FORMATS:
        raise ProtocolError(POLICY, f"format {str(fmt)[:20]!r}: use s16 or f32")
    check_sample_rate(rate, model_rate)
    return StreamConfig(rate, fmt)


def check_sample_rate(rate: Any, model_rate: int) -> None:
    """An integer from MIN_SAMPLE_RATE to MAX_SAMPLE_RATE Hz that resamples to the model's rate in short blocks."""
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE \
            or 1 / math.gcd(rate, model_rate) > MAX_RESAMPLE_BLOCK:
        raise ProtocolError(POLICY, f"sample_rate {str(rate)[:20]}: unsupported; give an integer of Hz from "
                                    f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, e.g. 16000, 44100, 48000")


def decode_pcm(data: bytes, fmt: str) -> np.ndarray:
    """A binary frame -> float32 samples in [-1, 1]."""
    dtype, scale = FORMATS[fmt]
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise ProtocolError(UNSUPPORTED_DATA, f"a binary frame of {len(data)} bytes: {fmt} samples take {size} "
                                              "bytes each")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if scale != 1.0:
        samples /= scale
    elif not np.isfinite(samples).all():
        raise ProtocolError(UNSUPPORTED_DATA, "a binary frame with NaN or infinite samples")
    return samples


# --- server messages ---------------------------------------------------------------------------


def _seconds(t: float) -> float:
    return round(t, TIME_DECIMALS)


def word_dict(word: Word) -> dict[str, Any]:
    return {"word": word.word, "start": _seconds(word.start), "end": _seconds(word.end),
            "confidence": round(word.confidence, CONFIDENCE_DECIMALS)}


def update_message(words: list[Word], partial: str, seconds: float, decoded: float) -> dict[str, Any]:
    """New committed words (never revised; the key is left out when there are none), the partial text
    after them (may change), audio received and audio whose model output is final, in seconds."""
    message: dict[str, Any] = {"words": [word_dict(w) for w in words]} if words else {}
    message.update(partial=partial, seconds=_seconds(seconds), decoded=_seconds(decoded))
    return message


def endpoint_message(line: str, seconds: float) -> dict[str, Any]:
    """A pause after speech: the words committed since the previous endpoint make a line."""
    return {"text": line, "endpoint": True, "seconds": _seconds(seconds)}


def final_message(text: str, seconds: float) -> dict[str, Any]:
    """The stream is done: its whole transcript (the last message before the close)."""
    return {"final": True, "text": text, "seconds": _seconds(seconds)}


def error_message(code: int, reason: str) -> dict[str, Any]:
    return {"error": reason, "code": code}


def close_reason(reason: str) -> str:
    """A reason cut to fit a close frame."""
    data = reason.encode()
    return reason if len(data) <= MAX_REASON_BYTES else data[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."
