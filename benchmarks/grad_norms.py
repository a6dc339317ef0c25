"""Gradient norms of the LibriSpeech recipe's model (Deep Speech 2 size) on real speech, to set its clipping.

Trains ``recipe=librispeech``'s model (2 conv + 5 BiLSTM x 1024, 80 mels) without clipping for
``--steps`` optimizer steps on a LibriSpeech-layout folder, on the CPU, and records the global L2
norm of the gradients before each step. Prints, per batch size, the norm's percentiles and the share
of steps that a clip value would touch. Every norm goes to ``--out``/grad_norms_<batch s>s.json
(a JSON list, rewritten after every step, so a run stopped early still reports with ``--norms``):

    python benchmarks/grad_norms.py --librispeech ../shared/data/mini-librispeech-16/LibriSpeech \\
        --batch-seconds 16 --steps 300 --out .
    python benchmarks/grad_norms.py --norms grad_norms_16s.json

The loss is the recipe's (mean over utterances of each utterance's CTC loss), the learning rate its
peak ``optim.lr`` after ``--warmup-steps``. A clip value is meant to catch the rare outlier step
(a bad batch, an early spike), not to rescale every step. Norms shrink as batches grow (less
gradient noise), so the CPU's small batches give an upper bound for the recipe's GPU batches.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import lightning as L
import torch
from omegaconf import open_dict

from asr.data.manifest import from_librispeech, write_manifest
from asr.report import format_table
from asr.training.config import compose_config
from asr.training.train import train

PERCENTILES = (50, 90, 99)
CANDIDATE_CLIPS = (5.0, 100.0, 200.0, 400.0, 1000.0, 2000.0)


class GradNorms(L.Callback):
    """The global L2 norm of the gradients before each optimizer step (before any clipping),
    written to ``out`` (JSON) as training goes."""

    def __init__(self, out: str) -> None:
        self.out, self.norms = Path(out), []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        grads = [p.grad.detach().float().norm() for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.stack(grads).norm()) if grads else 0.0)
        self.out.write_text(json.dumps(self.norms))


def measure(manifest: Path, work: Path, out: Path, batch_seconds: float, steps: int, warmup: int) -> list[float]:
    cfg = compose_config("recipe=librispeech", "data=manifest", f"data.corpus.splits.train={manifest}",
                         f"data.corpus.splits.dev={manifest}", f"data.corpus.splits.test={manifest}",
                         f"data.batch_seconds={batch_seconds}", "data.num_workers=1", "data.pin_memory=false",
                         "schedule.global_batch_seconds=null", "schedule.warmup_hours=null",
                         "schedule.val_every_hours=null", f"optim.warmup_steps={warmup}",
                         "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.gradient_clip_val=0",
                         f"trainer.max_steps={steps}", "trainer.max_epochs=-1", "trainer.val_check_interval=1.0",
                         "trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false",
                         "logger=none", "test=false", "callbacks.checkpoint=null", "callbacks.last_checkpoint=null")
    with open_dict(cfg):
        cfg.callbacks.grad_norms = {"_target_": "__main__.GradNorms", "out": str(out)}
    train(cfg, work / f"batch{batch_seconds:g}")
    return json.loads(out.read_text())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--librispeech", help="a LibriSpeech-layout folder (speaker/chapter/*.flac)")
    p.add_argument("--norms", nargs="+", help="report the grad_norms_<batch s>s.json files of earlier runs instead of training")
    p.add_argument("--batch-seconds", type=float, nargs="+", default=[16.0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--out", default=".", help="folder for grad_norms_<batch s>s.json")
    args = p.parse_args(argv)
    if args.norms:
        report({float(Path(f).stem.removeprefix("grad_norms_").removesuffix("s")): json.loads(Path(f).read_text())
                for f in args.norms})
        return
    if not args.librispeech:
        p.error("--librispeech FOLDER (to train) or --norms FILE (to report a run's norms) is required")
    utterances, _ = from_librispeech(args.librispeech, progress=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = write_manifest(work / "train.jsonl", utterances)
        for seconds in args.batch_seconds:
            out = Path(args.out) / f"grad_norms_{seconds:g}s.json"
            results[seconds] = measure(manifest, work, out, seconds, args.steps, args.warmup_steps)
    report(results)


def report(results: dict[float, list[float]]) -> None:
    rows = [[f"{s:g}", len(n), *(percentile(n, q) for q in PERCENTILES), max(n),
             *(f"{100 * sum(x > c for x in n) / len(n):.1f}" for c in CANDIDATE_CLIPS)] for s, n in results.items()]
    print(format_table(["batch s", "steps", *(f"p{q}" for q in PERCENTILES), "max",
                        *(f"% > {c:g}" for c in CANDIDATE_CLIPS)], rows))


if __name__ == "__main__":
    main()
