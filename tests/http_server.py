"""A file server on 127.0.0.1 for tests and benchmarks: GET and HEAD with Range requests, an optional
latency added to every request (as object storage answers), and faults on demand (HTTP 503 for the
next N requests, or a connection closed mid-body)."""

from __future__ import annotations

import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class FileServer:
    """Serves ``root`` at ``http://127.0.0.1:<port>/``; ``with FileServer(root) as server: server.url``."""

    def __init__(self, root: str | Path, latency_s: float = 0.0) -> None:
        self.root, self.latency_s = Path(root), latency_s
        self.failures_left = 0  # the next this many requests answer 503
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                server.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}".strip())
                if server.latency_s:
                    time.sleep(server.latency_s)
                if server.failures_left > 0:
                    server.failures_left -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.root / self.path.lstrip("/").split("?")[0]
                if not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = path.stat().st_size
                start, end = 0, size - 1
                match = _RANGE.match(self.headers.get("Range", ""))
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        end = min(size - 1, int(match.group(2))) if match.group(2) else size - 1
                    else:
                        start = max(0, size - int(match.group(2)))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if body:
                    self.wfile.flush()
                    with open(path, "rb") as f:  # the kernel copies: the server costs no CPU of its own
                        offset, remaining = start, end - start + 1
                        while remaining > 0:
                            sent = os.sendfile(self.connection.fileno(), f.fileno(), offset, remaining)
                            if sent == 0:
                                break
                            offset, remaining = offset + sent, remaining - sent

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
