"""DDP training of the tiny model on 2 CPU processes (gloo), for tests/test_ddp.py.

    python tests/ddp_check.py RUN_DIR TRAIN DEV TEST

Lightning's ``ddp`` strategy starts rank 1 by running this command line again, which is why this
is a script and not a test function. One epoch; each rank writes RUN_DIR/probe/rank<r>.json with
the dataset positions of its training batches, its own (unreduced) validation edit counts and the
validation WER as logged (reduced over both ranks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.train import train  # noqa: E402
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides  # noqa: E402


class Probe(L.Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.record: dict = {"train_indices": []}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record["train_indices"].append(list(batch.indices))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.record["val_counts"] = {name: [int(getattr(pl_module, name).errors), int(getattr(pl_module, name).total)]
                                     for name in ("val_wer", "val_cer")}

    def on_validation_end(self, trainer, pl_module) -> None:
        self.record["val_wer"] = float(trainer.callback_metrics["val/wer"])
        self.record["world_size"] = trainer.world_size
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))


def main() -> None:
    run_dir, train_m, dev_m, test_m = sys.argv[1:5]
    cfg = compose_config(*manifest_overrides({"train": train_m, "dev": dev_m, "test": test_m}), *TINY_MODEL,
                         "logger=none", "test=false", "strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                         "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                         "trainer.enable_model_summary=false", "data.batch_seconds=4.5", "data.num_buckets=2")
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "__main__.Probe", "out": str(Path(run_dir) / "probe")}
    train(cfg, run_dir)


if __name__ == "__main__":
    main()
