"""A training run of the tiny model for tests/test_resume.py, in its own process (signals, exits).

    python tests/resume_check.py RUN_DIR TRAIN DEV TEST --max-steps N [--wait-at STEP] [--requeue-file F]

Trains with asr.training.train.train() on the given manifests, deterministically on one CPU thread, and
writes into RUN_DIR/probe/: ``first_step`` (the global step of its first training step, i.e.
where it resumed), ``ready`` (when it waits for a signal at the start of step ``--wait-at``) and
``weights.pt`` (the final weights, when training ends normally).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.training.preemption import Preemption  # noqa: E402
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides, train_as_the_script_does  # noqa: E402

SIGNAL_WAIT_S = 30.0  # how long a run waits at --wait-at for the test to send its signal


class Probe(L.Callback):
    """Records where training started, optionally waits for a preemption signal, saves the weights."""

    def __init__(self, out: str, wait_at: int | None = None) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.wait_at = wait_at
        self.started = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.started:
            self.started = True
            (self.out / "first_step").write_text(str(trainer.global_step))
        if trainer.global_step == self.wait_at:
            preemption = next(cb for cb in trainer.callbacks if isinstance(cb, Preemption))
            (self.out / "ready").write_text("waiting")
            deadline = time.monotonic() + SIGNAL_WAIT_S
            while not preemption.requested and time.monotonic() < deadline:
                time.sleep(0.01)

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()}, self.out / "weights.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("train")
    parser.add_argument("dev")
    parser.add_argument("test")
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--wait-at", type=int)
    parser.add_argument("--requeue-file", help="the stub requeue command writes the job id here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # identical arithmetic in every run
    manifests = {"train": args.train, "dev": args.dev, "test": args.test}
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL, "logger=none", "test=false",
                         f"trainer.max_steps={args.max_steps}", "trainer.deterministic=true",
                         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                         "data.batch_seconds=4.5", "data.num_buckets=2", "optim.warmup_steps=3")
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "__main__.Probe", "out": str(Path(args.run_dir) / "probe"),
                               "wait_at": args.wait_at}
        if args.requeue_file:
            cfg.callbacks.preemption.requeue_command = [
                sys.executable, "-c", f"open({args.requeue_file!r}, 'w').write('{{job_id}}')"]
    train_as_the_script_does(cfg, args.run_dir)


if __name__ == "__main__":
    main()
