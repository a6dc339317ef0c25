"""``shard.py`` / ``asr-shard``: manifests (asr, NeMo, Lhotse) and LibriSpeech folders -> tar shards + index."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from asr.cli.common import Fail, error, program, run, setup_logging
from asr.data.shards.layout import INDEX_JSON, SKIPPED
from asr.data.shards.writer import convert, dry_run
from asr.report import format_table

PROG = program("shard.py")  # asr-shard when run as that command


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(
        prog=PROG, description="Pack a corpus into tar shards of about --shard-hours of audio each (FLAC inside, "
                               "WebDataset/NeMo tarred layout), shuffled together, with the index training plans "
                               "from. Run it again after an interruption: finished shards are not rewritten.",
        epilog="examples:\n  shard.py data/librispeech/train-*.jsonl -o /data/shards/ls960 --shard-hours 2\n"
               "  shard.py cuts_train.jsonl.gz -o shards/ --sample-rate 16000     # a Lhotse CutSet\n"
               "  shard.py train_manifest.json -o shards/ --dry-run               # a NeMo manifest: the plan only\n"
               "then: train.py data=shards data.corpus.splits.train=/data/shards/ls960 ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="manifests (.jsonl, NeMo .json, Lhotse cuts .jsonl.gz) or "
                                                  "LibriSpeech-layout folders")
    parser.add_argument("-o", "--output", required=True, help="the folder to write the shards and the index to")
    parser.add_argument("--shard-hours", type=float, default=1.0, help="audio per shard (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, help="resample to this rate (default: each input's own)")
    parser.add_argument("--seed", type=int, default=0, help="the global shuffle's seed (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="processes writing shards (default %(default)s; "
                                                               "0: this one)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (shards, hours, estimated size); "
                                                               "read no audio, write nothing")
    return run(parser.prog, _shard, parser.parse_args(argv))


def _shard(args: argparse.Namespace) -> int:
    if args.shard_hours <= 0:
        raise Fail(f"--shard-hours {args.shard_hours}: must be positive")
    if args.workers < 0:
        raise Fail(f"--workers {args.workers}: must be 0 or more")
    if args.dry_run:
        plans, estimate = dry_run(args.inputs, args.shard_hours, args.seed, args.sample_rate)
        hours = [p.seconds / 3600 for p in plans]
        rows = [[len(plans), sum(len(p.utterances) for p in plans), sum(hours), min(hours), max(hours),
                 estimate / 1e9]]
        print(format_table(["shards", "utterances", "hours", "min h/shard", "max h/shard", "GB (estimate)"], rows))
        return 0
    done = [0]

    def progress(_: dict) -> None:
        done[0] += 1
        print(f"\r{PROG}: {done[0]} shard(s) done", end="", file=sys.stderr, flush=True)

    try:
        summary = convert(args.inputs, args.output, args.shard_hours, args.sample_rate, args.seed, args.workers,
                          on_shard=progress)
    except ValueError as err:  # ManifestError, and shards of another conversion in the folder
        raise Fail(str(err)) from None
    print(file=sys.stderr)
    for problem in summary.skipped:
        error(PROG, f"{problem.path}: {problem.reason} (skipped)")
    print(format_table(["shards", "written now", "hours", "GB", "skipped"],
                       [[summary.shards, summary.written, summary.seconds / 3600, summary.bytes / 1e9,
                         len(summary.skipped)]]))
    print(f"{args.output}: index in {INDEX_JSON}" + (f", skipped inputs in {SKIPPED}" if summary.skipped else ""))
    return 1 if summary.skipped else 0

