"""DDP training of the tiny model on 2 CPU processes (gloo), for tests/test_ddp.py.

    python tests/ddp_check.py RUN_DIR TRAIN DEV TEST [--max-epochs N] [--wait-at STEP] [--devices N] [--probe DIR]
                              [--val-every STEPS] [--resume auto]

TRAIN is a manifest, or a folder of shards (scripts/shard.py): then data=shards.

Lightning's ``ddp`` strategy starts rank 1 by running this command line again, which is why this
is a script and not a test function. Each rank writes RUN_DIR/probe/rank<r>.json: the dataset
positions of its training batches per epoch, the global step it started at, its own (unreduced)
validation edit counts and the validation WER as logged (reduced over both ranks) at the last
validation; and rank<r>.pt, its final weights. With ``--wait-at``, rank 0 waits at the start of
that step until it receives SIGUSR1 (sent by the test to rank 0 only) and writes ``ready`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.training.preemption import Preemption  # noqa: E402
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides, train_as_the_script_does  # noqa: E402

SIGNAL_WAIT_S = 30.0


class Probe(L.Callback):
    def __init__(self, out: str, wait_at: int | None = None) -> None:
        self.out = Path(out)
        self.wait_at = wait_at
        self.record: dict = {"train_indices": {}, "first_step": None}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Recorded as the batch starts: a step that starts is trained (a preemption stops at its end).
        self.record["train_indices"].setdefault(str(trainer.current_epoch), []).append(list(batch.indices))
        if self.record["first_step"] is None:
            self.record["first_step"] = trainer.global_step
        if trainer.global_step == self.wait_at and trainer.global_rank == 0:
            preemption = next(cb for cb in trainer.callbacks if isinstance(cb, Preemption))
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "ready").write_text(str(os.getpid()))
            deadline = time.monotonic() + SIGNAL_WAIT_S
            while not preemption.requested and time.monotonic() < deadline:
                time.sleep(0.01)


    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.record["val_counts"] = {name: [int(getattr(pl_module, name).errors), int(getattr(pl_module, name).total)]
                                     for name in ("val_wer", "val_cer")}

    def on_validation_end(self, trainer, pl_module) -> None:
        self.record["val_wer"] = float(trainer.callback_metrics["val/wer"])
        self.record["world_size"] = trainer.world_size
        self._write(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer)
        torch.save({k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                   self.out / f"rank{trainer.global_rank}.pt")

    def on_exception(self, trainer, pl_module, exception) -> None:  # a preemption: what was trained so far
        self._write(trainer)

    def _write(self, trainer) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("run_dir", "train", "dev", "test"):
        parser.add_argument(name)
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--wait-at", type=int)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--probe", help="where the probe writes (default RUN_DIR/probe)")
    parser.add_argument("--val-every", type=int, help="validate (and checkpoint) every this many steps")
    parser.add_argument("--resume")
    args = parser.parse_args()
    data = manifest_overrides({"train": args.train, "dev": args.dev, "test": args.test})
    if Path(args.train).is_dir():  # shards
        data = [o.replace("data=manifest", "data=shards") for o in data] + ["data.shard_window=2"]
    extra = [f"trainer.val_check_interval={args.val_every}", "trainer.check_val_every_n_epoch=null"] if args.val_every else []
    if args.resume:
        extra.append(f"resume={args.resume}")
    cfg = compose_config(*data, *extra, *TINY_MODEL,
                         "logger=none", "test=false", "strategy=ddp", "trainer.accelerator=cpu", f"trainer.devices={args.devices}",
                         f"trainer.max_epochs={args.max_epochs}", "trainer.enable_progress_bar=false",
                         "trainer.enable_model_summary=false", "trainer.deterministic=true", "data.batch_seconds=2.5",
                         "data.num_buckets=2", "callbacks.preemption.sync_every_n_steps=1")
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "__main__.Probe", "out": args.probe or str(Path(args.run_dir) / "probe"),
                               "wait_at": args.wait_at}
    train_as_the_script_does(cfg, args.run_dir)


if __name__ == "__main__":
    main()
