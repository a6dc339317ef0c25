"""Test helpers: small LibriSpeech-layout ``.tar.gz`` archives, and a local HTTP server for them.

The archives have the real layout (``LibriSpeech/<subset>/<spk>/<chapter>/...`` plus the top-level
``*.TXT`` files) with a few short FLAC files each. ``RangeServer`` serves files from memory on
127.0.0.1 with HTTP Range support, can cut a response half-way once, and logs every request.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]
SAMPLE_RATE = 16_000


@dataclass
class FakeSubset:
    archive: bytes
    md5: str
    durations: dict[str, float]  # utterance id -> exact seconds
    corrupt: list[str] = field(default_factory=list)  # utterance ids whose FLAC is garbage


def make_subset(subset: str, n: int = 3, seed: int = 0, corrupt: int = 0,
                seconds: tuple[float, float] = (0.5, 1.25)) -> FakeSubset:
    """An in-memory archive of ``n`` utterances of noise lasting ``seconds`` (the last ``corrupt``
    of them unreadable), with three-word transcripts."""
    rng = np.random.default_rng(seed)
    spk, chapter = 100 + seed, 2000 + seed
    buf, durations, bad, lines = io.BytesIO(), {}, [], []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add_member(tar, "LibriSpeech/SPEAKERS.TXT", b"; fake speakers\n")
        for i in range(n):
            utt = f"{spk}-{chapter}-{i:04d}"
            data, frames = noise(rng, seconds, "FLAC")
            if i >= n - corrupt:  # a FLAC signature, then garbage: the header cannot be read
                data = b"fLaC" + rng.bytes(64)
                bad.append(utt)
            else:
                durations[utt] = frames / SAMPLE_RATE
            add_member(tar, f"LibriSpeech/{subset}/{spk}/{chapter}/{utt}.flac", data)
            lines.append(f"{utt} {' '.join(rng.choice(WORDS, 3)).upper()}")
        add_member(tar, f"LibriSpeech/{subset}/{spk}/{chapter}/{spk}-{chapter}.trans.txt",
                   "\n".join(lines).encode() + b"\n")
    archive = buf.getvalue()
    return FakeSubset(archive, hashlib.md5(archive).hexdigest(), durations, bad)


def noise(rng: np.random.Generator, seconds: tuple[float, float], audio_format: str) -> tuple[bytes, int]:
    """A file of white noise lasting between ``seconds`` (16 kHz, 16-bit, ``audio_format`` as
    soundfile names it: FLAC, NIST for SPHERE), and its length in samples."""
    frames = int(rng.integers(int(seconds[0] * SAMPLE_RATE), int(seconds[1] * SAMPLE_RATE)))
    buf = io.BytesIO()
    sf.write(buf, 0.1 * rng.standard_normal(frames), SAMPLE_RATE, format=audio_format, subtype="PCM_16")
    return buf.getvalue(), frames


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file ``name`` holding ``data`` to an archive being written."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archives(folder: Path, subsets: dict[str, FakeSubset]) -> Path:
    """Write ``<subset>.tar.gz`` files and their ``md5sum.txt`` into ``folder``; return the latter."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, s in subsets.items():
        (folder / f"{name}.tar.gz").write_bytes(s.archive)
    md5sums = folder / "md5sum.txt"
    md5sums.write_text("".join(f"{s.md5}  {name}.tar.gz\n" for name, s in subsets.items()))
    return md5sums


class RangeServer:
    """``files`` (URL path -> bytes) on http://127.0.0.1:<port>; ``cut_once`` paths lose their
    connection half-way through the first response; ``requests`` logs (path, Range header)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(data) and start:
                    self.send_error(416)
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut_once:
                    server.cut_once.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> RangeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
