"""End to end: generate a small synthetic corpus, train a small model, and check that it learned.

The corpus uses a 12-word vocabulary so the test fits in a few minutes on 2 cores; its test
voices are never heard in training, as in the full recipe.

The result depends on the CPU (oneDNN, MKL and PyTorch pick kernels per instruction set, and the
thread count changes the order of sums), so the settings are chosen to converge well before the
last epoch and the bound is far from every result measured. ``benchmarks/cpu_spread.py`` reruns
this training in each setting; on a 2-core AVX-512 + AMX Xeon (commit 84ac2bc) it gave, as test
WER % (untrained 100 %; last train losses over the first 0.0001-0.0002; dev WER below 50 % by
epoch 7 and below 20 % by epoch 9 in every setting):

    ONEDNN_MAX_CPU_ISA                  1 thread   2 threads
    unset (the machine's: AMX)             4.3        3.6
    AVX512_CORE                            4.3        3.6
    AVX2                                   1.4        2.9
    AVX2, ATEN_CPU_CAPABILITY=avx2,
      MKL_ENABLE_INSTRUCTIONS=AVX2         5.8        0.7
    unset, seed=1 / 2 / 3                  0.7 / 0.0 / 0.7

With 30 s batches (half the optimizer steps) the same 30 epochs ended anywhere from 5 % to 35 %:
every run sat on CTC's blank-only plateau until epoch 10, and some then stalled near 20 %.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from asr.training.train import train
from tests.conftest import compose_config

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "yes", "no"]
SIZES = "{train: 400, dev: 40, test: 40}"
EPOCHS = 30
BATCH_SECONDS = 15  # 30 epochs of about 50 steps (see above)
BOUND = 0.25  # test WER: untrained 100 %, trained 0-6 % in every setting measured (see above)
LOSS_RATIO = 0.05  # last train losses over the first: 0.0002 at most measured; 0.3-0.7 on the plateau


def end_to_end_overrides(corpus_root: Path) -> list[str]:
    """The Hydra overrides of the test's corpus, model and optimizer (benchmarks/cpu_spread.py uses them too)."""
    return [f"data.corpus.root={corpus_root}", f"data.corpus.sizes={SIZES}", f"data.corpus.words=[{','.join(WORDS)}]",
            "data.corpus.progress=false", "data.num_workers=0", "data.pin_memory=false",
            "model.rnn_layers=2", "model.hidden_size=128", f"data.batch_seconds={BATCH_SECONDS}",
            "optim.lr=3e-3", "optim.warmup_steps=50", f"trainer.max_epochs={EPOCHS}",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.max_time=null"]


def _column(metrics_csv, name):
    with open(metrics_csv) as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


def train_and_measure(overrides: list[str], folder: Path) -> dict[str, float]:
    """Test the untrained model, train it, test it again: WER before and after, mean train loss of the first
    and of the last 3 logged steps (train losses are noisy), and the training run's own results."""
    untrained = train(compose_config(*overrides, "logger=none", "train=false"), folder / "untrained")
    results = train(compose_config(*overrides, "logger=csv"), folder / "run")
    losses = _column(folder / "run" / "metrics.csv", "train/loss")
    norms = _column(folder / "run" / "metrics.csv", "train/grad_norm")
    return {**results, "start_wer": untrained["test/test/wer"], "wer": results["test/test/wer"],
            "first_loss": sum(losses[:3]) / 3, "last_loss": sum(losses[-3:]) / 3,
            "logged_losses": len(losses), "grad_norms": norms}


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus") / "synthetic"


def test_training_learns_to_transcribe_unseen_voices(corpus_root, tmp_path):
    m = train_and_measure(end_to_end_overrides(corpus_root), tmp_path)
    print(f"\nend-to-end: test WER {m['start_wer']:.1%} untrained -> {m['wer']:.1%} trained, "
          f"train loss {m['first_loss']:.1f} -> {m['last_loss']:.1f}")
    assert m["last_loss"] < LOSS_RATIO * m["first_loss"], \
        f"training loss did not fall enough: {m['first_loss']:.1f} -> {m['last_loss']:.1f}"
    assert m["start_wer"] > 0.9
    assert m["wer"] < BOUND, f"test WER {m['wer']:.1%} on unseen voices"
    assert len(m["grad_norms"]) == m["logged_losses"] and all(0 < n < math.inf for n in m["grad_norms"])
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    best = (folder / "best.ckpt").resolve()  # a link to the best checkpoint by validation WER
    assert best.is_file() and f"wer{m['val/wer_best']:.4f}" in best.name
