"""Accuracy benchmark of the default recipe: WER on the synthetic corpus's unseen voices after a
fixed training-time budget on this machine's CPU cores, with the training curve.

Usage:
    python benchmarks/synthetic_wer.py                    # the recipe as `python scripts/train.py` runs it
    python benchmarks/synthetic_wer.py --minutes 5 model.hidden_size=128   # any Hydra override

Prints one row per validation (epoch, minutes, train loss, dev WER/CER), the test WER/CER of the
best checkpoint, and writes the same as JSON (--json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from asr.report import format_table
from asr.training.config import compose_config
from asr.training.train import train


def budget_string(minutes: float) -> str:
    """Minutes -> Lightning's ``max_time`` "DD:HH:MM:SS"."""
    seconds = round(minutes * 60)
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def machine_line() -> str:
    """The processor, cores, torch version and threads a measurement ran with."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def curve(metrics_csv: Path) -> list[dict[str, float]]:
    """One row per validation from a CSVLogger file: epoch, minutes, last train loss, dev WER/CER."""
    rows, last_loss = [], float("nan")
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                last_loss = float(row["train/loss"])
            if row.get("val/wer"):
                rows.append({"epoch": int(row["epoch"]), "step": int(row["step"]),
                             "minutes": float(row.get("time/elapsed_min") or "nan"),
                             "train_loss": last_loss, "dev_wer": 100 * float(row["val/wer"]),
                             "dev_cer": 100 * float(row["val/cer"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training-time budget (default %(default)s)")
    parser.add_argument("--runs-dir", default=None, help="where the run folder goes (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.hidden_size=128")
    args = parser.parse_args()

    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="asr-bench-"))
    cfg = compose_config("recipe=synthetic", "logger=csv", f"trainer.max_time={budget_string(args.minutes)}",
                         "trainer.enable_progress_bar=false", *args.overrides)
    run_dir = runs_dir / "synthetic-benchmark"
    results = train(cfg, run_dir)

    rows = curve(run_dir / "metrics.csv")
    print(format_table(["epoch", "step", "minutes", "train loss", "dev WER %", "dev CER %"],
                       [[r["epoch"], r["step"], r["minutes"], r["train_loss"], r["dev_wer"], r["dev_cer"]] for r in rows]))
    test_wer, test_cer = 100 * results["test/test/wer"], 100 * results["test/test/cer"]
    machine = machine_line()
    print(f"\ntest WER {test_wer:.2f}% / CER {test_cer:.2f}% on unseen voices after {args.minutes:g} min "
          f"of training ({machine}); run folder {run_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps({"minutes": args.minutes, "overrides": args.overrides,
                                               "test_wer": test_wer, "test_cer": test_cer, "curve": rows,
                                               "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
