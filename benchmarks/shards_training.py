"""The default recipe trained from tar shards against the same recipe from files: test WER, padding.

Prepares the built-in corpus (``recipe=synthetic``), shards its training split with
``scripts/shard.py``'s converter, then trains the recipe twice with the same seed and the same
number of epochs: once from the files (``data=synthetic``), once from the shards (``data=shards``,
every other ``data.*`` knob copied from the recipe; dev and test stay manifests). Prints, per run,
the optimizer steps, the padding share (padded audio samples in training batches that are not
speech, over the batches the model trained on, speed perturbation included), the minutes and the
test WER/CER of the best checkpoint:

    python benchmarks/shards_training.py                       # 5 epochs each, ~30 min on 2 cores
    python benchmarks/shards_training.py --shards 16 --json shards_vs_files.json

The recipe's 15-minute ``max_time`` is lifted so that both runs train the same epochs whatever
the speed of their input; the minutes column says what each took.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from asr.data.manifest import read_manifest
from asr.data.shards.writer import convert
from asr.report import format_table
from asr.training.config import compose_config
from asr.training.train import train

OWN_KEYS = ("corpus", "name", "root")  # data.* keys that data=shards sets itself


class Padding(L.Callback):
    """Speech samples and padded samples of every training batch, summed over the run, and the
    optimizer steps: written to ``out`` (JSON) when training ends."""

    def __init__(self, out: str) -> None:
        self.out, self.speech, self.padded = Path(out), 0, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch is not None:
            self.speech += int(batch.lengths.sum())
            self.padded += batch.waveforms.shape[0] * batch.waveforms.shape[1]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out.write_text(json.dumps({"steps": trainer.global_step, "padding": 1 - self.speech / self.padded}))


def _value(v) -> str:
    return json.dumps(OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)


def run(cfg, run_dir: Path) -> dict[str, float]:
    out = run_dir.with_name(run_dir.name + "-padding.json")
    with open_dict(cfg):
        cfg.callbacks.padding = {"_target_": "__main__.Padding", "out": str(out)}
    start = time.perf_counter()
    results = train(cfg, run_dir)
    minutes = (time.perf_counter() - start) / 60
    measured = json.loads(out.read_text())
    return {"steps": measured["steps"], "padding": 100 * measured["padding"], "minutes": minutes,
            "wer": 100 * results["test/test/wer"],
            "cer": 100 * results["test/test/cer"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=16, help="how many shards the training split becomes")
    p.add_argument("--work", help="folder for the shards and the runs (default: a temp folder)")
    p.add_argument("--json", help="write the table's rows here")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both runs, e.g. trainer.max_epochs=1")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="asr-shards-bench-"))
    common = ["trainer.max_time=null", "logger=csv", "trainer.enable_progress_bar=false", *args.overrides]
    files_cfg = compose_config("recipe=synthetic", *common)

    corpus = instantiate(files_cfg.data.corpus)
    corpus.prepare()  # generates the built-in corpus once (minutes), as the first training run would
    manifests = corpus.manifests()
    hours = sum(u.duration for u in read_manifest(manifests["train"])) / 3600
    shard_dir = work / "shards"
    summary = convert([manifests["train"]], shard_dir, shard_hours=hours / args.shards, seed=0)
    print(f"{summary.shards} shards of the {hours:.2f} h training split in {shard_dir}")

    data = {k: v for k, v in files_cfg.data.items() if k not in OWN_KEYS}  # batching, workers, speeds: the recipe's
    shards_cfg = compose_config("recipe=synthetic", *common, "data=shards", f"data.corpus.splits.train={shard_dir}",
                                f"data.corpus.splits.dev={manifests['dev']}",
                                f"data.corpus.splits.test={manifests['test']}",
                                *(f"data.{k}={_value(v)}" for k, v in data.items()))
    rows = {"files": run(files_cfg, work / "files"), "shards": run(shards_cfg, work / "shards-run")}
    print(format_table(["input", "steps", "padding %", "minutes", "test WER %", "test CER %"],
                       [[name, *(r[k] for k in ("steps", "padding", "minutes", "wer", "cer"))]
                        for name, r in rows.items()]))
    print(f"shards - files: WER {rows['shards']['wer'] - rows['files']['wer']:+.2f} points, "
          f"padding {rows['shards']['padding'] - rows['files']['padding']:+.2f} points; runs in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
