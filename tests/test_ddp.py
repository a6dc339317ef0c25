"""DDP on 2 CPU processes (tests/ddp_check.py): disjoint shards that cover the epoch, and a
validation WER reduced over ranks that equals a single-process evaluation of the same checkpoint."""

import json
import os
import subprocess
import sys

import lightning as L

from asr.checkpoint import load_checkpoint
from asr.data.manifest import read_manifest
from asr.module import ASRModule
from asr.train import build_datamodule
from tests.conftest import ROOT, TINY_MODEL, compose_config, manifest_overrides
from tests.ddp_check import Probe

DDP_TIMEOUT_S = 240


def test_two_process_ddp_shards_the_epoch_and_agrees_with_one_process(chirp_manifests, tmp_path):
    run_dir = tmp_path / "ddp"
    manifests = [str(chirp_manifests[s]) for s in ("train", "dev", "test")]
    out = subprocess.run([sys.executable, "tests/ddp_check.py", str(run_dir), *manifests], cwd=ROOT,
                         capture_output=True, text=True, timeout=DDP_TIMEOUT_S,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # two processes on two cores
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((run_dir / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)

    seen = [[i for batch in r["train_indices"] for i in batch] for r in ranks]
    assert not set(seen[0]) & set(seen[1])  # disjoint ...
    assert sorted(seen[0] + seen[1]) == list(range(len(read_manifest(chirp_manifests["train"]))))  # ... and complete
    assert len(ranks[0]["train_indices"]) == len(ranks[1]["train_indices"])  # same step count: no DDP hang

    single = _validate_in_one_process(run_dir / "checkpoints" / "last.ckpt", chirp_manifests, tmp_path / "single")
    for name in ("val_wer", "val_cer"):  # edits and reference lengths summed over the ranks
        assert [sum(r["val_counts"][name][k] for r in ranks) for k in (0, 1)] == single["val_counts"][name]
    assert ranks[0]["val_wer"] == ranks[1]["val_wer"] == single["val_wer"]


def _validate_in_one_process(checkpoint, manifests, out):
    """The validation of ``checkpoint`` as training runs it (same batching, same greedy decoding), one process."""
    loaded = load_checkpoint(checkpoint)
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL)
    datamodule = build_datamodule(cfg.data, loaded.tokenizer, loaded.model, cfg.seed)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[Probe(str(out))],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(ASRModule(loaded.model, loaded.tokenizer), datamodule=datamodule)
    return json.loads((out / "rank0.json").read_text())
