"""Streaming recognition: accuracy by latency, word latency, concurrent real-time streams, memory.

    python benchmarks/streaming.py --model offline=runs/a/last.ckpt --model chunked=runs/b/last.ckpt \\
        --test data/synthetic/test.jsonl [--test real=heldout.jsonl] [--json out.json]

For each model (a checkpoint; streamed at its own chunk and right context when it was trained
chunked, and at every ``--latency`` pair):

1. accuracy: WER and CER of the test sets decoded offline (``transcribe``: the model as trained)
   and streamed (each utterance fed in 0.1 s pieces, streams stepped together), greedy;
2. word latency: the audio seconds between the end of a word (its time in the final transcript)
   and its first appearance in the stream's output (partial tail or committed), p50 and p95, from
   streams fed 20 ms at a time; on a live stream the processing delay (part 3) adds to it;
3. concurrency (``--streams``): N streams fed real-time audio in 20 ms ticks on ``--threads``
   torch threads, each stepped (in one batch with the others) once its next chunk's audio is in, as
   ``scripts/serve.py``'s engine does: the delay from the tick that completed a chunk to the step's end, p50 and p95,
   and whether it stays within 200 ms (then the latency is within 200 ms of the algorithmic one);
4. memory (``--memory-hours``): the peak RSS of a process streaming 10 s and ``H`` hours of audio.

Algorithmic latency = chunk + right context + the front end's look-ahead
(``StreamingModel.latency``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import quantiles

import torch

from asr.audio import load_audio
from asr.data.manifest import read_manifest
from asr.inference.recognizer import Recognizer, load
from asr.inference.stream import step_streams
from asr.metrics import char_errors, word_errors
from asr.report import format_table

PIECE_SECONDS = 0.1  # audio per accept() in the accuracy runs
TICK_SECONDS = 0.02  # audio per step in the latency and concurrency runs
BATCH_STREAMS = 64  # streams stepped together in the accuracy runs
DELAY_BUDGET = 0.2  # seconds of processing delay the concurrency target allows
DEFAULT_LATENCIES = ((0.1, 0.1), (0.2, 0.2), (0.4, 0.4), (0.5, 0.5), (1.0, 1.0))


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[q - 1]


def stream_texts(recognizer: Recognizer, audio: list[torch.Tensor], chunk: float | None, right: float | None,
                 piece: float) -> tuple[list[str], list[float], float]:
    """Stream every recording (BATCH_STREAMS at a time): texts, word latencies (s), algorithmic latency."""
    texts, latencies = [], []
    step = round(piece * recognizer.sample_rate)
    for first in range(0, len(audio), BATCH_STREAMS):
        group = audio[first : first + BATCH_STREAMS]
        streams = [recognizer.stream(chunk=chunk, right_context=right, endpoint=0) for _ in group]
        seen: list[dict[tuple[int, str], float]] = [{} for _ in group]  # (index, word) -> audio s when first shown
        position = 0
        while not all(s.finished for s in streams):
            for s, a in zip(streams, group):
                if position < a.numel():
                    s.feed(a[position : position + step])
                elif not s.state.finished:
                    s.close_input()
            position += step
            for i, update in enumerate(step_streams(streams)):
                heard = min(position, group[i].numel()) / recognizer.sample_rate
                shown = [w.word for w in streams[i].words] + update.partial.split()
                for k, word in enumerate(shown):
                    seen[i].setdefault((k, word), heard)
        for s, first_seen in zip(streams, seen):
            texts.append(s.text)
            for k, word in enumerate(s.words):  # when this word was first shown at its place, as it ended up
                latencies.append(max(0.0, first_seen.get((k, word.word), word.end) - word.end))
    return texts, latencies, streams[0].engine.latency


def error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    return word_errors(references, hypotheses).rate, char_errors(references, hypotheses).rate


def accuracy(recognizer: Recognizer, name: str, tests: dict[str, list], latencies, rows: list) -> None:
    for test, (refs, audio, paths) in tests.items():
        refs = [recognizer.tokenizer.normalize(r) for r in refs]
        offline = [t.text for t in recognizer.transcribe(paths)]
        wer, cer = error_rates(refs, offline)
        rows.append([name, test, "offline", "-", 100 * wer, 100 * cer, "-", "-"])
        for chunk, right in latencies:
            texts, word_latency, algorithmic = stream_texts(recognizer, audio, chunk, right, PIECE_SECONDS)
            wer, cer = error_rates(refs, texts)
            label = "model's own" if chunk is None else f"{chunk:g} + {right:g}"
            rows.append([name, test, label, f"{algorithmic:.2f}", 100 * wer, 100 * cer,
                         f"{percentile(word_latency, 50):.2f}", f"{percentile(word_latency, 95):.2f}"])
            print(format_table(HEADERS, rows[-1:]), flush=True)


HEADERS = ["model", "test set", "chunk + right (s)", "algorithmic latency (s)", "WER %", "CER %",
           "word latency p50 (s)", "word latency p95 (s)"]


def concurrency(recognizer: Recognizer, audio: list[torch.Tensor], counts: list[int], seconds: float,
                threads: int) -> list[list]:
    """N real-time streams in TICK_SECONDS ticks: processing delay p50/p95 per N."""
    torch.set_num_threads(threads)
    tick = round(TICK_SECONDS * recognizer.sample_rate)
    loop = torch.cat(audio)
    rows = []
    for n in counts:
        streams = [recognizer.stream(endpoint=1.0) for _ in range(n)]
        offsets = [(i * 7919 * tick) % max(1, loop.numel() - tick) for i in range(n)]  # different audio each
        delays, start = [], time.perf_counter()
        for k in range(round(seconds / TICK_SECONDS)):
            due = start + k * TICK_SECONDS
            time.sleep(max(0.0, due - time.perf_counter()))
            for s, o in zip(streams, offsets):
                at = (o + k * tick) % (loop.numel() - tick)
                s.feed(loop[at : at + tick])
            ready = [s for s in streams if s.state.received >= s.engine.next_chunk_samples(s.state)]  # as serve.py
            if ready:
                step_streams(ready)
                delays.append(time.perf_counter() - due)
        late = time.perf_counter() - (start + seconds)
        p50, p95 = percentile(delays, 50), percentile(delays, 95)
        rows.append([threads, n, f"{1000 * p50:.0f}", f"{1000 * p95:.0f}", f"{late:.1f}",
                     "yes" if p95 <= DELAY_BUDGET else "no"])
        print(format_table(CONCURRENCY_HEADERS, rows[-1:]), flush=True)
    return rows


CONCURRENCY_HEADERS = ["threads", "streams", "delay p50 (ms)", "delay p95 (ms)", "behind real time at the end (s)",
                       "p95 within 200 ms"]

_MEMORY_CHILD = """
import sys, torch
def peak_mb():  # this process's own peak (VmHWM): ru_maxrss would also count the parent's, inherited through exec
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
from asr.inference.recognizer import load
recognizer = load(sys.argv[1], device="cpu")
audio = torch.load(sys.argv[2])
stream, seconds, fed, piece = recognizer.stream(endpoint=1.0), float(sys.argv[3]), 0, recognizer.sample_rate // 2
while fed < seconds * recognizer.sample_rate:
    at = fed % (audio.numel() - piece)
    stream.accept(audio[at : at + piece])
    fed += piece
stream.finish()
print(peak_mb(), len(stream.words))
"""


def memory(checkpoint: str, audio: list[torch.Tensor], hours: float, work: Path) -> list[list]:
    loop = work / "loop.pt"
    torch.save(torch.cat(audio), loop)
    rows = []
    for seconds in (10.0, hours * 3600):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, checkpoint, str(loop), str(seconds)],
                             capture_output=True, text=True, check=True)
        rss, words = out.stdout.split()
        rows.append([f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s", f"{float(rss):.0f}", words,
                     f"{time.perf_counter() - started:.0f}"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT (several)")
    p.add_argument("--test", action="append", required=True, help="[NAME=]MANIFEST (several)")
    p.add_argument("--latency", action="append", help="CHUNK,RIGHT seconds (several; default: 0.1,0.1 ... 1,1)")
    p.add_argument("--limit", type=int, help="utterances per test set")
    p.add_argument("--streams", type=int, nargs="*", default=[], help="concurrency: stream counts to try")
    p.add_argument("--stream-seconds", type=float, default=20.0, help="audio per concurrency run")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--memory-hours", type=float, help="memory: stream this many hours (and 10 s)")
    p.add_argument("--json", help="write every table here")
    args = p.parse_args()
    latencies = [tuple(float(x) for x in pair.split(",")) for pair in args.latency] if args.latency \
        else list(DEFAULT_LATENCIES)
    tests = {}
    for spec in args.test:
        name, _, path = spec.rpartition("=")
        utterances = read_manifest(path)[: args.limit]
        tests[name or Path(path).stem] = ([u.text for u in utterances], [load_audio(u.audio, 16_000) for u in utterances],
                                          [u.audio for u in utterances])
    results: dict[str, list] = {"accuracy": [], "concurrency": [], "memory": []}
    models = dict(spec.split("=", 1) for spec in args.model)
    for name, checkpoint in models.items():
        recognizer = load(checkpoint, device="cpu")
        own = [(None, None)] if getattr(recognizer.runner.module, "chunk_frames", 0) else []
        accuracy(recognizer, name, tests, own + latencies, results["accuracy"])
    print("\n" + format_table(HEADERS, results["accuracy"]))
    first_audio = next(iter(tests.values()))[1]
    if args.streams:
        recognizer = load(list(models.values())[-1], device="cpu")
        for threads in args.threads:
            results["concurrency"] += concurrency(recognizer, first_audio, args.streams, args.stream_seconds, threads)
        print("\n" + format_table(CONCURRENCY_HEADERS, results["concurrency"]))
    if args.memory_hours:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            results["memory"] = memory(list(models.values())[-1], first_audio, args.memory_hours, Path(tmp))
        print("\n" + format_table(["stream", "peak RSS (MB)", "words", "wall s"], results["memory"]))
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
