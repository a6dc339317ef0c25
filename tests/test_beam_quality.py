"""Beam search never hurts: on a trained model, lexicon beam search without an LM is within a point of
greedy decoding, and beam search with an n-gram of the training text (word 3-gram or character
6-gram), tuned by tune_lm.py, beats it.

The corpus is the synthetic one with a word list of one-letter words and digits: "nine", "one" are
also spelled by the words "n", "i", "o", "e", so a lexicon search that ended words anywhere but at a
space would split them. One small model is trained for the whole module (the cost of this file).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asr.cli.tune_lm import main as tune_lm_main
from asr.decoding.beam import BeamDecoder
from asr.decoding.greedy import GreedyDecoder
from asr.decoding.ngram import build_arpa, read_texts
from asr.decoding.options import DecodeOptions, options_path, stored_options
from asr.inference.evaluate import load_test_set
from asr.inference.recognizer import Recognizer
from asr.inference.tuning import GREEDY_POINT, DevSet, dev_set
from asr.metrics import ErrorCounts, word_errors
from asr.training.train import train
from tests.conftest import compose_config

WORDS = ["a", "e", "i", "n", "o", "x", "zero", "one", "two", "three", "six", "nine"]
SIZES = "{train: 300, dev: 40, test: 60}"
EPOCHS = 25
NOISE = 0.01  # WER difference that is noise here (1 point: two words of the test set)
WORD_NOISE = 0.02  # deletions or insertions, as a fraction of the words, that are noise


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A small model trained on the corpus; its checkpoint and the corpus' splits."""
    root = tmp_path_factory.mktemp("beam_quality")
    corpus = root / "synthetic"
    cfg = compose_config(
        f"data.corpus.root={corpus}", f"data.corpus.sizes={SIZES}", f"data.corpus.words=[{','.join(WORDS)}]",
        "data.corpus.progress=false", "data.num_workers=0", "data.pin_memory=false", "data.batch_seconds=30",
        "model.rnn_layers=2", "model.hidden_size=128", "optim.lr=3e-3", "optim.warmup_steps=50",
        f"trainer.max_epochs={EPOCHS}", "trainer.max_time=null", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger=none", "test=false")
    train(cfg, root / "run")
    return {"checkpoint": root / "run" / "checkpoints" / "best.ckpt",
            **{split: corpus / split for split in ("train", "dev", "test")}}


@pytest.fixture(scope="module")
def recognizer(trained) -> Recognizer:
    return Recognizer.load(trained["checkpoint"], "cpu", DecodeOptions())


@pytest.fixture(scope="module")
def sets(trained, recognizer) -> dict[str, DevSet]:
    """Dev and test log-probs, the model run once."""
    return {s: dev_set(recognizer, load_test_set(trained[s]), trained["checkpoint"], None) for s in ("dev", "test")}


def errors(recognizer: Recognizer, data: DevSet, decoder) -> ErrorCounts:
    return word_errors(data.references, [recognizer.decode(e, decoder=decoder).text for e in data.emissions])


def test_the_model_learned_but_still_makes_errors(recognizer, sets):
    greedy = errors(recognizer, sets["test"], GreedyDecoder(recognizer.tokenizer.blank))
    assert 0.0 < greedy.rate < 0.5, f"greedy test WER {greedy.rate:.1%}: the comparisons below need a model " \
                                     "that learned and still errs"


def _counts(c: ErrorCounts) -> str:
    return f"WER {c.rate:.1%} (S{c.substitutions} D{c.deletions} I{c.insertions})"


def test_lexicon_beam_without_lm_is_not_worse_than_greedy(recognizer, sets, tmp_path):
    """Within a point of greedy or better, and it neither drops nor adds more words than greedy (beyond
    noise): words end at the model's spaces (not inside "nine" at its letters), the last one included."""
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(WORDS) + "\n")
    beam = BeamDecoder(recognizer.tokenizer, DecodeOptions("beam", lexicon=str(lexicon)))
    greedy = GreedyDecoder(recognizer.tokenizer.blank)
    for name, data in sets.items():
        g, b = errors(recognizer, data, greedy), errors(recognizer, data, beam)
        margin = WORD_NOISE * g.reference_length
        message = f"{name}: lexicon beam {_counts(b)} against greedy {_counts(g)}"
        assert b.rate <= g.rate + NOISE, message
        assert b.deletions <= g.deletions + margin and b.insertions <= g.insertions + margin, message


@pytest.mark.parametrize("unit", ["word", "char"])
def test_tuned_lm_beats_greedy_and_is_stored(unit, trained, recognizer, sets, tmp_path, capsys):
    """tune_lm.py with an LM of the training text (a word 3-gram: lexicon search; a character 6-gram:
    lexicon-free) stores weights that beat greedy on dev, and they beat greedy on the test set."""
    lm = tmp_path / f"{unit}.arpa"
    build_arpa(read_texts([trained["train"]]), lm, unit=unit)
    ckpt = tmp_path / "best.ckpt"
    shutil.copy(trained["checkpoint"], ckpt)
    assert tune_lm_main([str(ckpt), str(trained["dev"]), "--lm", str(lm), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    stored = json.loads(options_path(ckpt).read_text())
    assert stored["tuning"]["wer"] < stored["tuning"]["greedy_wer"], "stored only when it beats greedy on dev"
    assert f"(greedy {100 * stored['tuning']['greedy_wer']:.2f}%); stored in" in out
    assert {"lm_weight": GREEDY_POINT[0], "word_score": GREEDY_POINT[1]} in [
        {k: t[k] for k in ("lm_weight", "word_score")} for t in stored["tuning"]["grid"]]
    tuned = stored_options(ckpt)
    decoder = BeamDecoder(recognizer.tokenizer, tuned)
    assert decoder.uses_lexicon == (unit == "word")
    greedy = errors(recognizer, sets["test"], GreedyDecoder(recognizer.tokenizer.blank))
    beam = errors(recognizer, sets["test"], decoder)
    assert beam.rate < greedy.rate, f"tuned beam + {unit} LM {_counts(beam)} against greedy {_counts(greedy)}"
