"""``serve.py`` / ``asr-serve``: a checkpoint -> a server of live streams (WebSocket) and files (HTTP POST),
with a web page that transcribes the microphone. The protocol: README.md, "Server protocol"."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Sequence

from asr.cli.common import Fail, add_decoding_args, add_model_args, decode_options, program, run, setup_logging
from asr.inference.stream import DEFAULT_ENDPOINT
from asr.serving.settings import (
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_WAIT,
    ServerSettings,
)

PROG = program("serve.py")  # asr-serve when run as that command
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
MS = 1000.0
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve a checkpoint: live transcription of many streams at once over WebSockets "
                               "(ws://HOST:PORT/stream), whole files by HTTP POST (/transcribe), GET /health, and a "
                               "web page at / that transcribes the microphone. SIGTERM finishes the open streams, "
                               "then exits 0.",
        epilog="examples:\n  serve.py model.ckpt --port 8000            # then open http://127.0.0.1:8000/\n"
               "  serve.py model.ckpt --host 0.0.0.0 --max-streams 50 --chunk 0.4 --right-context 0.4\n"
               "  curl --data-binary @talk.wav http://127.0.0.1:8000/transcribe",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py (streams run it in PyTorch)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s; 0: a free one, "
                                                                        "printed at start)")
    g = parser.add_argument_group("streams")
    g.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS,
                   help="streams and file transcriptions at once; one more is refused (default %(default)s)")
    g.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                   help="seconds without a message from a client before its stream is closed (default %(default)s)")
    g.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT * MS,
                   help="milliseconds new audio waits for other streams' before a batched step (default %(default)s)")
    g.add_argument("--chunk", type=float, help="streaming chunk, seconds (default: the model's own, or 0.5 for a "
                                               "model trained on whole utterances)")
    g.add_argument("--right-context", type=float, help="seconds of audio after each chunk (default: the model's "
                                                       "own, or 0.5)")
    g.add_argument("--endpoint", type=float, default=DEFAULT_ENDPOINT,
                   help="seconds of pause after speech that end a line (default %(default)s; 0: off)")
    g.add_argument("--drain-timeout", type=float, default=DEFAULT_DRAIN_TIMEOUT,
                   help="seconds the open streams get to finish at SIGTERM (default %(default)s)")
    g.add_argument("--record", metavar="DIR", help="write each stream's audio, as received, to DIR/stream-N.wav")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warning", help="uvicorn's (default %(default)s)")
    add_model_args(parser)
    add_decoding_args(parser)
    return run(parser.prog, _serve, parser.parse_args(argv))


def _check(args: argparse.Namespace) -> None:
    if args.max_streams < 1:
        raise Fail(f"--max-streams {args.max_streams}: must be at least 1")
    for flag in ("idle_timeout", "drain_timeout"):
        if getattr(args, flag) <= 0:
            raise Fail(f"--{flag.replace('_', '-')} {getattr(args, flag):g}: must be above 0")
    for flag in ("max_wait_ms", "endpoint"):
        if getattr(args, flag) < 0:
            raise Fail(f"--{flag.replace('_', '-')} {getattr(args, flag):g}: must be 0 or more")
    if args.chunk is not None and args.chunk <= 0:
        raise Fail(f"--chunk {args.chunk:g}: must be above 0")
    if args.right_context is not None and (args.right_context < 0 or args.chunk is None):
        raise Fail("--right-context needs --chunk, and is 0 or more")
    if args.threads is not None and args.threads < 1:
        raise Fail(f"--threads {args.threads}: must be at least 1")


def _serve(args: argparse.Namespace) -> int:
    _check(args)
    try:
        from asr.serving.app import create_app, serve
    except ImportError as err:
        raise Fail(f"the server needs FastAPI and uvicorn ({err.name} is missing): pip install 'asr[serve]'") from None
    from asr.inference.recognizer import Recognizer

    recognizer = Recognizer.load(args.checkpoint, args.device, decode_options(args), backend=args.backend,
                                 threads=args.threads)
    settings = ServerSettings(model=Path(args.checkpoint).name, max_streams=args.max_streams,
                              idle_timeout=args.idle_timeout, max_wait=args.max_wait_ms / MS, chunk=args.chunk,
                              right_context=args.right_context, endpoint=args.endpoint, record_dir=args.record,
                              drain_timeout=args.drain_timeout)
    try:
        app = create_app(recognizer, settings)
    except ValueError as err:  # not streamable: an export, or a bad latency
        raise Fail(str(err)) from None
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    hub = app.state.hub
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"{PROG}: listening on {url}/ (model {settings.model}, up to {settings.max_streams} streams, "
          f"latency {hub.engine.latency:.2f} s)", file=sys.stderr, flush=True)
    serve(app, sock, args.log_level)
    print(f"{PROG}: stopped", file=sys.stderr, flush=True)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise Fail(f"--host {host} --port {port}: cannot listen there ({err.strerror})") from None
    sock.listen(socket.SOMAXCONN)
    return sock
