"""Load test of scripts/serve.py: how many real-time streams one server keeps up with.

    python benchmarks/serve_load.py                         # N = 10 25 50 100 150, the default small model
    python benchmarks/serve_load.py --streams 50 --seconds 30 --server-threads 2 --json load.json

Starts the server (a checkpoint of the default recipe's model with random weights unless
``--checkpoint``; ``--chunk 0.4 --right-context 0.4``) on 127.0.0.1, then for each N opens N
WebSocket clients in this process, each sending its own audio as 16 kHz s16 in 20 ms frames paced by
the clock (real time; the clients start spread over one second, as independent users would), then
eof.

Latency of an update = its arrival - the time the client sent the audio frame that completed it.
An update reports ``decoded`` (seconds of audio whose model output is final); the audio that
completed it ends at ``decoded - chunk + latency`` (``latency``, from /health: the algorithmic
latency of a chunk's first frame; the chunk's last frame's is ``chunk`` less). So this latency is
the server's delay beyond the algorithmic one: the words of a chunk's first frame reach the client
``latency`` + this after they were spoken. A server keeps up with N streams when its p95 is within
``--budget-ms`` (200). The final message's delay after eof is reported apart. Also: the engine's mean
streams per batched step and its busy share of the wall clock, and the CPU time of this client process
(it shares the machine with the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.report import format_table  # noqa: E402
from tests.serving import RATE, ServerProcess, s16, tones  # noqa: E402

FRAME = 0.02  # seconds of audio per message
STAGGER = 1.0  # seconds over which the clients start
MS = 1000.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, nargs="+", default=[10, 25, 50, 100, 150], help="values of N")
    p.add_argument("--seconds", type=float, default=20.0, help="audio per client (default %(default)s)")
    p.add_argument("--checkpoint", help="a .ckpt (default: the default recipe's model, random weights)")
    p.add_argument("--chunk", type=float, default=0.4)
    p.add_argument("--right-context", type=float, default=0.4)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--server-threads", type=int, default=1, help="the server's torch threads (default %(default)s)")
    p.add_argument("--budget-ms", type=float, default=200.0, help="p95 delay that counts as keeping up")
    p.add_argument("--json", help="also write the rows to this JSON file")
    return p.parse_args(argv)


def random_checkpoint(path: Path) -> Path:
    """The default recipe's model (asr/conf/model/small.yaml) and tokenizer, random weights."""
    from inference import random_checkpoint as write  # benchmarks/inference.py's (imports torch)

    return write("synthetic", path)


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        return json.loads(r.read())


async def client(ws_url: str, audio: bytes, start: float, info: dict, delays: list, finals: list,
                 errors: list) -> None:
    import websockets

    frame_bytes = int(FRAME * RATE) * 2
    n_frames = math.ceil(len(audio) / frame_bytes)
    sent = [math.inf] * n_frames
    chunk, latency, total = info["chunk"], info["latency"], len(audio) / 2 / RATE
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    async with websockets.connect(ws_url, max_size=None, compression=None) as ws:
        async def receive() -> None:
            last = 0.0
            async for message in ws:
                arrival = time.perf_counter()
                m = json.loads(message)
                if m.get("final"):
                    finals.append(arrival - eof_sent[0])
                elif "error" in m:
                    errors.append(m["error"])
                elif m.get("decoded", 0) > last and m["seconds"] < total:
                    last = m["decoded"]
                    completed = min(last - chunk + latency, total) * RATE * 2  # bytes
                    frame = min(n_frames - 1, max(0, math.ceil(completed / frame_bytes) - 1))
                    delays.append(arrival - sent[frame])

        eof_sent = [math.inf]
        reader = asyncio.create_task(receive())
        t0 = time.perf_counter()
        for k in range(n_frames):
            await asyncio.sleep(max(0.0, t0 + k * FRAME - time.perf_counter()))
            await ws.send(audio[k * frame_bytes: (k + 1) * frame_bytes])
            sent[k] = time.perf_counter()
        eof_sent[0] = time.perf_counter()
        await ws.send(json.dumps({"eof": True}))
        await reader


async def run_n(server: ServerProcess, n: int, audios: list[bytes], info: dict) -> dict:
    delays: list[float] = []
    finals: list[float] = []
    errors: list[str] = []
    before = health(server.url)["engine"]
    wall, cpu = time.perf_counter(), time.process_time()
    start = time.perf_counter() + 0.5
    await asyncio.gather(*(client(server.ws_url, audios[i % len(audios)], start + STAGGER * i / n, info, delays,
                                  finals, errors) for i in range(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = health(server.url)["engine"]
    steps = after["steps"] - before["steps"]
    d = np.array(delays) * MS
    return {"streams": n, "updates": len(d), "p50_ms": float(np.percentile(d, 50)),
            "p95_ms": float(np.percentile(d, 95)), "p99_ms": float(np.percentile(d, 99)), "max_ms": float(d.max()),
            "final_p95_ms": float(np.percentile(np.array(finals) * MS, 95)), "finals": len(finals),
            "errors": len(errors),
            "streams_per_step": (after["streams_stepped"] - before["streams_stepped"]) / max(1, steps),
            "engine_busy": (after["busy_seconds"] - before["busy_seconds"]) / wall,
            "engine_cpu": (after["cpu_seconds"] - before["cpu_seconds"]) / wall,
            "server_cpu": (after["process_cpu_seconds"] - before["process_cpu_seconds"]) / wall,
            "client_cpu": cpu / wall, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(Path(tmp) / "small.ckpt")
        audios = [s16(tones(args.seconds, seed)) for seed in range(8)]
        rows = []
        with ServerProcess(checkpoint, "--chunk", str(args.chunk), "--right-context", str(args.right_context),
                           "--max-wait-ms", str(args.max_wait_ms), "--max-streams", str(max(args.streams) + 10),
                           threads=args.server_threads) as server:
            info = health(server.url)
            print(f"server: {info['model']}, chunk {info['chunk']} s, right context {info['right_context']} s, "
                  f"algorithmic latency {info['latency']} s, {args.server_threads} torch thread(s), "
                  f"max wait {args.max_wait_ms:g} ms; {os.cpu_count()} cores", file=sys.stderr)
            for n in args.streams:
                row = asyncio.run(run_n(server, n, audios, info))
                row["keeps_up"] = row["p95_ms"] <= args.budget_ms and row["finals"] == n and not row["errors"]
                rows.append(row)
                print(f"N={n}: p95 {row['p95_ms']:.0f} ms", file=sys.stderr)
    print(format_table(["N streams", "updates", "p50 ms", "p95 ms", "p99 ms", "max ms", "final p95 ms",
                        "streams/step", "engine busy", "engine CPU", "server CPU", "client CPU", "load avg",
                        f"p95 <= {args.budget_ms:g} ms"],
                       [[r["streams"], r["updates"], f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}",
                         f"{r['max_ms']:.0f}", f"{r['final_p95_ms']:.0f}", f"{r['streams_per_step']:.1f}",
                         f"{r['engine_busy']:.0%}", f"{r['engine_cpu']:.0%}", f"{r['server_cpu']:.0%}",
                         f"{r['client_cpu']:.0%}", f"{r['load']:.1f}", "yes" if r["keeps_up"] else "no"]
                        for r in rows]))
    print(f"\nms: delay beyond the algorithmic latency ({info['latency']} s); CPU: share of one core (the server's "
          "process, its engine thread, this client process) over the run; load avg: the machine's, 1 minute")
    if args.json:
        Path(args.json).write_text(json.dumps({"server": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
