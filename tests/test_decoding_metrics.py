import pytest
import torch

from asr.decoding.greedy import GreedyDecoder
from asr.metrics import ErrorRate, char_errors, word_errors


def _log_probs(paths, vocab=5):
    """(batch, frames, vocab) log-probs whose argmax follows each path."""
    frames = max(len(p) for p in paths)
    x = torch.full((len(paths), frames, vocab), -10.0)
    for b, path in enumerate(paths):
        for t, s in enumerate(path):
            x[b, t, s] = -0.01
    return x.log_softmax(-1)


def test_greedy_collapses_repeats_and_removes_blanks():
    lp = _log_probs([[1, 1, 0, 1, 2, 2, 0, 0, 3], [4, 4, 4, 0, 0, 0, 0, 0, 0]])
    hyps = GreedyDecoder(blank=0)(lp, torch.tensor([9, 3]))
    assert hyps[0].tokens == [1, 1, 2, 3]  # the blank between the 1s keeps both
    assert hyps[0].frames == [0, 3, 4, 8]
    assert hyps[1].tokens == [4]


def test_greedy_ignores_frames_beyond_the_length():
    lp = _log_probs([[1, 2, 3, 4]])
    assert GreedyDecoder()(lp, torch.tensor([2]))[0].tokens == [1, 2]


def test_word_and_char_error_counts():
    c = word_errors(["the cat sat", "a b"], ["the bat sat on", "a b"])
    assert (c.substitutions, c.deletions, c.insertions, c.hits) == (1, 0, 1, 4)
    assert c.rate == pytest.approx(2 / 5)
    assert char_errors(["abc"], ["abd"]).rate == pytest.approx(1 / 3)
    assert word_errors([""], ["spurious words"]).insertions == 2


def test_corpus_rate_sums_edits_rather_than_averaging_rates():
    m = ErrorRate("word")
    m.update(["a b c d"], ["a b c d"])  # 0 errors / 4 words
    m.update(["x"], ["y"])  # 1 error / 1 word: a mean of rates would say 50%
    assert float(m.compute()) == pytest.approx(1 / 5)


def test_substitution_pairs_are_word_by_word():
    from asr.inference.evaluate import word_details

    counts, pairs = word_details("delta delta bravo", "lb lblbl bravo extra")
    assert (counts.substitutions, counts.insertions, counts.hits) == (2, 1, 1)
    assert pairs == {("delta", "lb"): 1, ("delta", "lblbl"): 1}
    assert word_details("", "two words")[0].insertions == 2
