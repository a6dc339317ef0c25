"""End to end: generate a small synthetic corpus, train a small model, and check that it learned.

The corpus uses a 12-word vocabulary so the test fits in a few minutes on 2 cores; its test
voices are never heard in training, as in the full recipe.
"""

import csv

import pytest

from asr.train import train
from tests.conftest import compose_config

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "yes", "no"]
SIZES = "{train: 400, dev: 40, test: 40}"


@pytest.fixture(scope="module")
def corpus_overrides(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "synthetic"
    return [f"data.corpus.root={root}", f"data.corpus.sizes={SIZES}", f"data.corpus.words=[{','.join(WORDS)}]",
            "data.corpus.progress=false", "data.num_workers=0", "data.pin_memory=false",
            "model.rnn_layers=2", "model.hidden_size=128", "data.batch_seconds=30",
            "optim.lr=3e-3", "optim.warmup_steps=50",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.max_time=null"]


def _column(metrics_csv, name):
    with open(metrics_csv) as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


def test_training_learns_to_transcribe_unseen_voices(corpus_overrides, tmp_path):
    untrained = train(compose_config(*corpus_overrides, "logger=none", "train=false"), tmp_path / "untrained")
    start_wer = untrained["test/test/wer"]
    results = train(compose_config(*corpus_overrides, "logger=csv", "trainer.max_epochs=30"), tmp_path / "run")

    losses = _column(tmp_path / "run" / "metrics.csv", "train/loss")
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3  # train losses are noisy: average a few
    assert last < 0.25 * first, f"training loss did not fall enough: {first:.1f} -> {last:.1f}"
    assert start_wer > 0.9
    assert results["test/test/wer"] < 0.25, f"test WER {results['test/test/wer']:.1%} on unseen voices"
    folder = tmp_path / "run" / "checkpoints"
    assert (folder / "last.ckpt").is_file()
    best = (folder / "best.ckpt").resolve()  # a link to the best checkpoint by validation WER
    assert best.is_file() and f"wer{results['val/wer_best']:.4f}" in best.name
