"""LibriSpeech preparation and input pipeline throughput on this machine's CPU cores.

    python benchmarks/data_pipeline.py [--data ../shared/data/librispeech-test-other-100] [--repeats 5]

Measures, on a folder in LibriSpeech layout (real FLAC files):
  1. manifest building: exact durations from the FLAC headers (asr.data.manifest.from_librispeech),
     utterances per second;
  2. extraction: a .tar.gz of the folder unpacked by asr.data.download.extract, one archive alone
     and two at once, in threads and in processes (prepare() uses processes), MB of archive per second;
  3. the training input pipeline: AudioDataset (FLAC decode, resampling for speed perturbation)
     -> DurationBatchSampler -> Collate through a DataLoader, for several worker counts, in
     utterances and audio seconds per second of wall time;
  4. with --shards: the same pipeline reading files, local shards, shards over HTTP from a server
     on 127.0.0.1 that adds --latency to every request (as object storage answers), and shards in
     an S3-compatible server (moto) on 127.0.0.1, each remote epoch with an empty shard cache
     (every shard downloaded); audio seconds per second over the whole epoch, the seconds to the
     first batch, and the steady state after it (what an epoch of hours runs at), also per worker;
  5. with --shards: a synthetic index of --index-utterances utterances (metadata only): the time from
     a fresh process to rank 0's first batch plan (of 32 ranks x 8 workers), and its peak RSS.
Prints one table per part (Markdown); --json FILE also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tarfile
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from statistics import median

import torch
from torch.utils.data import DataLoader

from asr.data.batching import Collate, DurationBatchSampler
from asr.data.corpora.archive import _extraction_context
from asr.data.dataset import AudioDataset
from asr.data.download import extract
from asr.data.manifest import from_librispeech
from asr.report import format_table
from asr.text import CharTokenizer, TextNormalizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-test-other-100"
SAMPLE_RATE = 16_000
BATCH_SECONDS = 160.0  # padded seconds per batch; the recipe's 1600 would make a single batch of this folder
ALPHABET = "abcdefghijklmnopqrstuvwxyz'"  # asr/conf/text/english.yaml
ARCHIVE_COPIES = 4  # the folder is put this many times into the test archive (~55 MB for the default folder)


def time_it(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def bench_manifest(folder: Path, repeats: int) -> list[list]:
    utterances, _ = from_librispeech(folder, progress=False)
    seconds = time_it(lambda: from_librispeech(folder, progress=False), repeats)
    return [["header reads (8 threads)", len(utterances), seconds, len(utterances) / seconds]]


def bench_extract(folder: Path, work: Path, repeats: int) -> list[list]:
    """extract() of one archive, then of two at once in threads and in processes (prepare's way;
    its pool starts once per prepare, so it is started and warmed before timing)."""
    archive = work / "subset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for copy in range(ARCHIVE_COPIES):
            tar.add(folder, arcname=f"LibriSpeech/test-other/{copy}")
    megabytes = archive.stat().st_size / 1e6
    n_files = ARCHIVE_COPIES * sum(1 for _ in folder.rglob("*.flac"))

    def unpack(pool: Executor | None, copies: int) -> None:
        targets = [work / f"out{i}" for i in range(copies)]
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
        args = [(archive, t, "LibriSpeech/test-other", False) for t in targets]
        if pool is None:
            extract(*args[0])
        else:
            list(pool.map(extract, *zip(*args)))

    rows = [["1 archive", n_files, time_it(lambda: unpack(None, 1), repeats)]]
    with ThreadPoolExecutor(2) as threads:
        rows.append(["2 at once, threads", 2 * n_files, time_it(lambda: unpack(threads, 2), repeats)])
    with ProcessPoolExecutor(2, mp_context=_extraction_context()) as processes:
        rows.append(["2 at once, processes", 2 * n_files, time_it(lambda: unpack(processes, 2), repeats)])
    return [[name, files, seconds, megabytes * files / n_files / seconds, files / seconds]
            for name, files, seconds in rows]


def bench_pipeline(folder: Path, repeats: int, workers: list[int]) -> list[list]:
    utterances, _ = from_librispeech(folder, progress=False)
    tokenizer = CharTokenizer(ALPHABET, TextNormalizer(lowercase=True, fold_accents=True, keep="'"))
    audio_seconds = sum(u.duration for u in utterances)
    rows = []
    for speeds in ((1.0,), (0.9, 1.0, 1.1)):
        dataset = AudioDataset(utterances, tokenizer, SAMPLE_RATE, speeds)
        for n in workers:
            sampler = DurationBatchSampler(dataset.durations, BATCH_SECONDS, num_buckets=10, shuffle=True)

            def epoch() -> None:
                loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collate(SAMPLE_RATE), num_workers=n)
                for _ in loader:
                    pass

            seconds = time_it(epoch, repeats)
            rows.append([" ".join(map(str, speeds)), n, len(dataset) / seconds, audio_seconds / seconds])
    return rows


def bench_shards(folder: Path, work: Path, repeats: int, workers: list[int], latency: float,
                 copies: int) -> list[list]:
    """Files vs local shards vs HTTP shards vs S3 shards, through the training DataLoader."""
    import sys

    from asr.data.manifest import write_manifest
    from asr.data.shards.dataset import ShardDataset
    from asr.data.shards.remote import ShardSet
    from asr.data.shards.sampler import ShardBatchSampler
    from asr.data.shards.writer import convert

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.http_server import FileServer

    utterances, _ = from_librispeech(folder, progress=False)
    utterances = [u.__class__(f"{u.id}-{c}", u.audio, u.duration, u.text, u.speaker) for c in range(copies)
                  for u in utterances]  # the folder's utterances several times: a longer epoch
    manifest = write_manifest(work / "all.jsonl", utterances)
    hours = sum(u.duration for u in utterances) / 3600
    convert([manifest], work / "shards", shard_hours=hours / 8, workers=2)  # 8 shards
    tokenizer = CharTokenizer(ALPHABET, TextNormalizer(lowercase=True, fold_accents=True, keep="'"))
    audio_seconds = sum(u.duration for u in utterances)

    def run(dataset, sampler, n) -> tuple[float, float, float]:
        """An epoch: its seconds, the seconds to its first batch, and the audio seconds per second
        after it (the steady state a long epoch lives in: workers started, first shards fetched)."""
        start = time.perf_counter()
        first, audio = None, 0.0
        for batch in DataLoader(dataset, batch_sampler=sampler, collate_fn=Collate(SAMPLE_RATE), num_workers=n):
            if first is None:
                first = time.perf_counter()
            else:
                audio += float(batch.lengths.sum()) / SAMPLE_RATE
        end = time.perf_counter()
        return end - start, first - start, audio / (end - first)

    def files(n: int) -> tuple[float, float, float]:
        dataset = AudioDataset(utterances, tokenizer, SAMPLE_RATE)
        return run(dataset, DurationBatchSampler(dataset.durations, BATCH_SECONDS, num_buckets=10), n)

    def shards(spec: str, n: int) -> tuple[float, float, float]:
        cache = Path(tempfile.mkdtemp(dir=work))  # empty: every shard is downloaded in the epoch
        shard_set = ShardSet(spec, cache_dir=str(cache))
        dataset = ShardDataset(shard_set, tokenizer, SAMPLE_RATE)
        try:
            return run(dataset, ShardBatchSampler(shard_set.index, BATCH_SECONDS, num_workers=n, window_shards=2), n)
        finally:
            shutil.rmtree(cache)

    rows = []
    with FileServer(work, latency_s=latency) as server, _s3_bucket(work / "shards") as s3:
        sources = [("files", files), ("local shards", lambda n: shards(str(work / "shards"), n)),
                   (f"HTTP shards, +{1000 * latency:.0f} ms", lambda n: shards(f"{server.url}/shards/", n))]
        if s3:
            sources.append(("S3 shards (moto)", lambda n: shards("s3://asr/shards/", n)))
        for n in workers:
            for name, read in sources:
                read(n)  # warm-up: page cache, imports
                epochs = [read(n) for _ in range(repeats)]
                seconds, first, steady = (median(e[k] for e in epochs) for k in range(3))
                rows.append([name, n, audio_seconds / seconds, first, steady, steady / max(1, n)])
    return rows


class _s3_bucket:
    """The shards in s3://asr/shards/ of a moto server on 127.0.0.1 (None without moto)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.server = folder, None

    def __enter__(self) -> bool:
        try:
            import boto3
            from moto.server import ThreadedMotoServer
        except ImportError:
            return False
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.server._server.server_address[1]}")
        client = boto3.client("s3")
        client.create_bucket(Bucket="asr")
        for path in self.folder.iterdir():
            client.upload_file(str(path), "asr", f"shards/{path.name}")
        return True

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()


_PLAN_ONE_RANK = """
import sys, time
start = time.perf_counter()
from asr.data.shards.remote import ShardSet
from asr.data.shards.sampler import ShardBatchSampler
shards = ShardSet(sys.argv[1])
loaded = time.perf_counter()
sampler = ShardBatchSampler(shards.index, 1600.0, num_replicas=32, rank=0, num_workers=8, window_shards=4)
first = next(iter(sampler))
done = time.perf_counter()
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024  # own peak, not the parent's
print(len(shards.index), loaded - start, done - start, peak, len(sampler))
"""


def bench_index(work: Path, utterances: int) -> list[list]:
    """A synthetic index (metadata only, LibriSpeech-like durations, 2 h shards); a fresh process
    loads it and plans rank 0's first batch."""
    import subprocess
    import sys

    import numpy as np

    from asr.data.shards.layout import ShardIndex, ShardInfo

    rng = np.random.default_rng(0)
    duration = np.clip(rng.normal(12.3, 3.5, utterances), 1.0, 24.5).astype(np.float32)
    per_shard = int(7200 / float(duration.mean()))
    shard = (np.arange(utterances) // per_shard).astype(np.uint32)
    shards = [ShardInfo(f"{s:06d}.tar", int((shard == s).sum()), float(duration[shard == s].sum()), 1)
              for s in range(int(shard[-1]) + 1)]
    folder = work / "index"
    folder.mkdir()
    ShardIndex(shards, shard, np.arange(utterances, dtype=np.uint64) * 400_000,
               np.full(utterances, 400_000, np.uint32), duration).save(folder)
    out = subprocess.run([sys.executable, "-c", _PLAN_ONE_RANK, str(folder)], capture_output=True, text=True, check=True)
    n, loaded, first, rss, batches = out.stdout.split()
    return [[int(n), len(shards), float(duration.sum()) / 3600, float(loaded), float(first), float(rss), int(batches)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder in LibriSpeech layout")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--shards", action="store_true", help="also parts 4 and 5 (shards; index scale)")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds the HTTP server adds to each request")
    parser.add_argument("--copies", type=int, default=4, help="times the folder's utterances are in the shard "
                                                               "benchmark's corpus")
    parser.add_argument("--index-utterances", type=int, default=5_000_000)
    parser.add_argument("--only-shards", action="store_true", help="parts 4 and 5 alone")
    args = parser.parse_args()
    folder = next(p.parent.parent.parent for p in sorted(args.data.rglob("*.trans.txt")))  # .../<subset>
    torch.set_num_threads(1)  # as in each DataLoader worker: rates are per process (per core)
    load = os.getloadavg()[0]
    print(f"{folder}: {os.cpu_count()} CPU cores, load average {load:.1f}, torch {torch.__version__}")
    results = {"cores": os.cpu_count(), "load_average": load}
    with tempfile.TemporaryDirectory() as tmp:
        parts = [] if args.only_shards else [
            ("manifest", ["step", "utterances", "seconds", "utterances/s"], bench_manifest(folder, args.repeats)),
            ("extract", ["extraction", "files", "seconds", "archive MB/s", "files/s"],
             bench_extract(folder, Path(tmp), args.repeats)),
            ("pipeline", ["speeds", "workers", "utterances/s", "audio s/s"],
             bench_pipeline(folder, args.repeats, args.workers)),
        ]
        if args.shards or args.only_shards:
            parts.append(("shards", ["source", "workers", "epoch audio s/s", "first batch (s)", "steady audio s/s",
                                     "steady audio s/s per worker"],
                          bench_shards(folder, Path(tmp), args.repeats, [w for w in args.workers if w > 0],
                                       args.latency, args.copies)))
            parts.append(("index", ["utterances", "shards", "hours", "index loaded (s)", "first batch plan (s)",
                                    "peak RSS (MB)", "batches of rank 0"], bench_index(Path(tmp), args.index_utterances)))
    for name, headers, rows in parts:
        print(f"\n{name}\n{format_table(headers, rows)}")
        results[name] = [dict(zip(headers, row)) for row in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
