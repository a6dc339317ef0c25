"""``decode.py --stream`` / ``--mic``: audio as it arrives -> lines of text, or JSON lines for programs.

In: WAV or raw 16-bit PCM on stdin or from a file or pipe (``arecord -f S16_LE -r 16000 | decode.py
CKPT --stream -``), or the microphone through ``sounddevice``. Out, ``--format txt``: on a terminal,
the line being spoken rewritten in place (committed words, then the partial tail), each line ended
by an endpoint (a pause) or the end; into a pipe or file, the ended lines only. ``--format jsonl``:
one JSON object per change, ``{"seconds", "words": [{"word", "start", "end", "confidence"}],
"partial", "endpoint", "final"}``, and ``"text"`` (all of it) on the last.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from typing import Iterator, TextIO

import torch

from asr.audio import AudioError, pcm_pieces
from asr.cli.common import Fail
from asr.inference.recognizer import Recognizer
from asr.inference.stream import DEFAULT_ENDPOINT, StreamUpdate

STDIN = "-"
STREAM_FORMATS = ("txt", "jsonl")
MIC_BLOCK_SECONDS = 0.05  # microphone audio per callback
CLEAR_LINE = "\r\033[K"  # back to the line's start, erase it


def add_stream_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("streaming (text as the audio arrives)")
    g.add_argument("--stream", action="store_true", help="read the audio argument as a stream: - for stdin (WAV or "
                                                         "raw PCM), or a file or pipe; prints lines as they are spoken")
    g.add_argument("--mic", action="store_true", help="stream the microphone (needs: pip install sounddevice); "
                                                      "Ctrl-C ends it")
    g.add_argument("--raw-rate", type=int, help="stdin is raw 16-bit little-endian mono PCM at this rate (Hz)")
    g.add_argument("--chunk", type=float, help="seconds the model reads at a time (default: the model's own, or "
                                               "0.5 for a model trained on whole utterances)")
    g.add_argument("--right-context", type=float, help="seconds it reads ahead of each chunk (default: the model's)")
    g.add_argument("--endpoint", type=float, default=DEFAULT_ENDPOINT,
                   help="seconds of pause after speech that end a line (default %(default)s; 0: never)")
    g.add_argument("--realtime", action="store_true", help="feed a file no faster than real time (a demo, or a "
                                                           "latency measurement)")


def run_stream(args: argparse.Namespace, recognizer: Recognizer) -> int:
    """Stream ``args.audio[0]`` (or the microphone) through ``recognizer``; print as ``args.format`` says."""
    fmt = "txt" if args.format in ("tsv", "txt") else args.format
    if fmt not in STREAM_FORMATS:
        raise Fail(f"--format {args.format}: a stream is written as {' or '.join(STREAM_FORMATS)}")
    if args.mic:
        rate, pieces = _microphone(recognizer.sample_rate)
    else:
        if len(args.audio) != 1:
            raise Fail("--stream reads one stream: - (stdin), a file or a pipe")
        source = sys.stdin.buffer if args.audio[0] == STDIN else _open(args.audio[0])
        try:
            rate, pieces = pcm_pieces(source, args.raw_rate, "<stdin>" if args.audio[0] == STDIN else args.audio[0])
        except AudioError as err:
            raise Fail(str(err)) from None
        if args.realtime:
            pieces = _paced(pieces, rate)
    try:
        stream = recognizer.stream(rate, args.chunk, args.right_context, args.endpoint)
    except ValueError as err:
        raise Fail(str(err)) from None
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115 (closed below)
    printer = _Printer(out, fmt, live=out.isatty())
    try:
        for piece in pieces:
            printer.show(stream.accept(piece))
    except KeyboardInterrupt:  # the microphone's end
        pass
    finally:
        printer.show(stream.finish(), text=stream.text)
        if out is not sys.stdout:
            out.close()
    print(f"decode.py: {stream.seconds:.1f} s of audio streamed, latency {stream.engine.latency:.2f} s "
          f"(chunk + right context + front end)", file=sys.stderr)
    return 0


def _open(path: str):
    try:
        return open(path, "rb")  # noqa: SIM115 (read until the process ends)
    except OSError as err:
        raise Fail(f"{path}: {err.strerror}") from None


def _paced(pieces: Iterator[torch.Tensor], rate: int) -> Iterator[torch.Tensor]:
    start, sent = time.perf_counter(), 0
    for piece in pieces:
        sent += piece.numel()
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        yield piece


def _microphone(rate: int) -> tuple[int, Iterator[torch.Tensor]]:
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the package is there, PortAudio is not
        raise Fail(f"--mic needs sounddevice and PortAudio: pip install sounddevice ({err})") from None
    blocks: queue.Queue = queue.Queue()

    def pieces() -> Iterator[torch.Tensor]:
        with sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32",
                                     blocksize=round(rate * MIC_BLOCK_SECONDS),
                                     callback=lambda data, *_: blocks.put(data[:, 0].copy())):
            print("decode.py: listening (Ctrl-C to stop)", file=sys.stderr)
            while True:
                yield torch.from_numpy(blocks.get())

    return rate, pieces()


class _Printer:
    """Updates -> text lines (rewritten in place when ``live``) or JSON lines."""

    def __init__(self, out: TextIO, fmt: str, live: bool) -> None:
        self.out, self.fmt, self.live = out, fmt, live
        self.line: list[str] = []  # the current line's committed words
        self.shown = ""

    def show(self, update: StreamUpdate, text: str | None = None) -> None:
        if self.fmt == "jsonl":
            if update.words or update.partial != self.shown or update.endpoint or update.final:
                row = {"seconds": round(update.seconds, 3),
                       "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                                  "confidence": round(w.confidence, 3)} for w in update.words],
                       "partial": update.partial, "endpoint": update.endpoint, "final": update.final}
                if update.final:
                    row["text"] = text or ""
                print(json.dumps(row), file=self.out, flush=True)
                self.shown = update.partial
            return
        self.line += [w.word for w in update.words]
        if update.endpoint or update.final:
            ended = " ".join(self.line)
            if ended or self.live:
                print((CLEAR_LINE if self.live else "") + ended, file=self.out, flush=True)
            self.line = []
        elif self.live:
            print(CLEAR_LINE + " ".join([*self.line, update.partial]).strip(), end="", file=self.out, flush=True)
