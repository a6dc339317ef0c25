"""Shared fixtures: composed configs, small corpora of generated audio, and a trained-for-two-steps checkpoint."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: with several torch processes on few cores (the
# suite starts training subprocesses), spinning threads take the cores the working ones need.
# Results do not change; only the wait does. Set before torch is imported (here and in subprocesses).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import numpy as np
import pytest
import soundfile as sf
from omegaconf import DictConfig

import asr.training.config
from asr.data.manifest import Utterance, write_manifest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "asr" / "conf"

TINY_MODEL = [
    "model.rnn_layers=1", "model.hidden_size=32",
    "model.conv=[{channels: 4, kernel: [3, 3], stride: [2, 2]}, {channels: 4, kernel: [3, 3], stride: [2, 2]}]",
]


def compose_config(*overrides: str) -> DictConfig:
    return asr.training.config.compose_config(*overrides)


def _chirps(folder: Path, n: int, seed: int) -> list[Utterance]:
    """Short noisy chirps with made-up transcripts: enough to run a training loop, not to learn."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "bravo", "charlie", "delta"]
    utts = []
    for i in range(n):
        seconds = rng.uniform(0.8, 1.6)
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.01 * rng.standard_normal(t.size)
        path = folder / f"utt{i:03d}.wav"
        sf.write(path, wave, 16000)
        utts.append(Utterance(f"utt{i:03d}", str(path), len(t) / 16000, " ".join(rng.choice(words, 2)), "spk"))
    return utts


@pytest.fixture(scope="session")
def chirp_manifests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chirps")
    return {split: write_manifest(root / f"{split}.jsonl", _chirps(root / split, n, seed))
            for split, n, seed in (("train", 12, 0), ("dev", 4, 1), ("test", 4, 2))}


def train_as_the_script_does(cfg: DictConfig, run_dir: Path | str) -> None:
    """``train(cfg, run_dir)`` with scripts/train.py's exit: a preemption prints its line on stderr and
    exits with status 75 (for the helper scripts the tests start as processes)."""
    import sys

    from asr.training.preemption import PREEMPTED_EXIT, Preempted
    from asr.training.train import train

    try:
        train(cfg, run_dir)
    except Preempted as stop:
        print(f"train.py: {stop}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT)


def manifest_overrides(manifests: dict[str, Path]) -> list[str]:
    return ["data=manifest", "data.num_workers=0", "data.pin_memory=false",
            *(f"data.corpus.splits.{k}={v}" for k, v in manifests.items())]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, chirp_manifests) -> Path:
    """A checkpoint written by a real (2-step) training run of the tiny model."""
    from asr.training.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny" / "run1"
    cfg = compose_config(*manifest_overrides(chirp_manifests), *TINY_MODEL, "logger=none", "trainer.max_steps=2",
                         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "test=false")
    train(cfg, run_dir)
    return run_dir / "checkpoints" / "last.ckpt"
