"""LibriSpeech preparation and input pipeline throughput on this machine's CPU cores.

    python benchmarks/data_pipeline.py [--data ../shared/data/librispeech-test-other-100] [--repeats 5]

Measures, on a folder in LibriSpeech layout (real FLAC files):
  1. manifest building: exact durations from the FLAC headers (asr.data.manifest.from_librispeech),
     utterances per second;
  2. extraction: a .tar.gz of the folder unpacked by asr.data.download.extract, one archive alone
     and two at once, in threads and in processes (prepare() uses processes), MB of archive per second;
  3. the training input pipeline: AudioDataset (FLAC decode, resampling for speed perturbation)
     -> DurationBatchSampler -> Collate through a DataLoader, for several worker counts, in
     utterances and audio seconds per second of wall time.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder in LibriSpeech layout")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    folder = next(p.parent.parent.parent for p in sorted(args.data.rglob("*.trans.txt")))  # .../<subset>
    torch.set_num_threads(1)  # as in each DataLoader worker: rates are per process (per core)
    load = os.getloadavg()[0]
    print(f"{folder}: {os.cpu_count()} CPU cores, load average {load:.1f}, torch {torch.__version__}")
    results = {"cores": os.cpu_count(), "load_average": load}
    with tempfile.TemporaryDirectory() as tmp:
        parts = [
            ("manifest", ["step", "utterances", "seconds", "utterances/s"], bench_manifest(folder, args.repeats)),
            ("extract", ["extraction", "files", "seconds", "archive MB/s", "files/s"],
             bench_extract(folder, Path(tmp), args.repeats)),
            ("pipeline", ["speeds", "workers", "utterances/s", "audio s/s"],
             bench_pipeline(folder, args.repeats, args.workers)),
        ]
    for name, headers, rows in parts:
        print(f"\n{name}\n{format_table(headers, rows)}")
        results[name] = [dict(zip(headers, row)) for row in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
