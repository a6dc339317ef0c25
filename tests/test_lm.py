"""Kneser-Ney ARPA building, ARPA checks and fixes, lexicons."""

import gzip
import json
import random

import pytest

from asr.data.corpora import sentences
from asr.decoding.arpa import (
    UNKNOWN,
    LMError,
    arpa_vocabulary,
    check_lm_file,
    fix_arpa_tabs,
    lexicon_from_words,
    read_arpa,
    read_lexicon,
    write_lexicon,
)
from asr.decoding.ngram import build_arpa, discounts, lm_tokens, read_texts

TEXTS = sentences.sentences(random.Random(0), 300)


@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "w3.arpa"
    build_arpa(TEXTS, path, order=3)
    return path


def _contexts(model):
    """Contexts seen in the text, unseen ones, and mixtures (back-off at every order)."""
    seen = [g[:-1] for g in list(model.orders[2])[:20]]
    return [(), ("<s>",), ("the",), *seen, ("zebra", "the"), ("the", "zebra"), ("<s>", "nonsense")]


@pytest.mark.parametrize("unit, order", [("word", 3), ("char", 5), ("word", 1)])
def test_every_context_gives_a_distribution(tmp_path, unit, order):
    path = tmp_path / "lm.arpa"
    build_arpa(TEXTS, path, order=order, unit=unit)
    model = read_arpa(path)
    vocab = [w for w in model.vocabulary() if w != "<s>"]
    assert UNKNOWN in vocab and "</s>" in vocab
    for context in _contexts(model) if order == 3 else [(), tuple(model.vocabulary()[:order - 1])]:
        assert sum(10 ** model.log10prob(context, w) for w in vocab) == pytest.approx(1.0, abs=1e-5)


def test_kenlm_reads_it_and_scores_as_the_arpa_says(arpa):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    model = read_arpa(arpa)
    words = model.vocabulary()
    kenlm = KenLM(str(arpa), Dictionary(words))
    for sentence in TEXTS[:5] + ["the zebra sat"]:
        state, history = kenlm.start(False), ["<s>"]
        for word in sentence.split():
            state, score = kenlm.score(state, words.index(word) if word in words else words.index(UNKNOWN))
            assert score == pytest.approx(model.log10prob(history, word if word in words else UNKNOWN), abs=1e-5)
            history.append(word)


def test_arpa_is_tab_separated_with_counts_in_the_header(arpa):
    lines = arpa.read_text().splitlines()
    counts = {int(line.split("=")[0][6:]): int(line.split("=")[1]) for line in lines if line.startswith("ngram ")}
    assert counts == {n + 1: len(o) for n, o in enumerate(read_arpa(arpa).orders)}
    entries = [line for line in lines if line and not line.startswith(("\\", "ngram"))]
    assert entries and all(len(line.split("\t")) in (2, 3) for line in entries)
    assert check_lm_file(arpa) == "arpa"


def test_space_separated_arpa_is_named_and_fixed(tmp_path, arpa):
    spaced = tmp_path / "spaced.arpa"
    spaced.write_text(arpa.read_text().replace("\t", " "))
    with pytest.raises(LMError, match=r"spaced\.arpa:\d+: ARPA fields are separated by spaces, KenLM needs tabs"):
        check_lm_file(spaced)
    fixed = tmp_path / "fixed.arpa"
    assert fix_arpa_tabs(spaced, fixed) > 0
    assert read_arpa(fixed).orders == read_arpa(arpa).orders


def test_gzipped_arpa_is_read_as_is(tmp_path, arpa):
    gz = tmp_path / "lm.arpa.gz"
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    assert arpa_vocabulary(gz) == arpa_vocabulary(arpa)


def test_not_an_arpa_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    with pytest.raises(LMError, match=r"notes\.txt: not an ARPA language model .* build one with"):
        check_lm_file(tmp_path / "notes.txt")


def test_texts_from_manifests_and_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("Hello, World!\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "x.wav", "duration": 1.0, "text": "Good morning"}) + "\n")
    assert [t.strip() for t in read_texts([tmp_path / "a.txt", tmp_path / "m.jsonl"])] == ["Hello, World!", "Good morning"]
    model = build_arpa(read_texts([tmp_path / "a.txt", tmp_path / "m.jsonl"]), tmp_path / "lm.arpa", 2)
    assert {"hello", "world", "good", "morning"} <= set(model.vocabulary()), "text is normalized first"
    with pytest.raises(LMError, match="text file not found"):
        list(read_texts([tmp_path / "missing.txt"]))
    (tmp_path / "corpus" / "100" / "1000").mkdir(parents=True)
    (tmp_path / "corpus" / "100" / "1000" / "100-1000.trans.txt").write_text("100-1000-0000 THE CAT\n100-1000-0001 A DOG\n")
    assert list(read_texts([tmp_path / "corpus"])) == ["THE CAT", "A DOG"]


def test_empty_text_is_an_error(tmp_path):
    with pytest.raises(LMError, match="empty after normalization"):
        build_arpa(["!!!", ""], tmp_path / "lm.arpa")


def test_char_tokens_mark_word_boundaries():
    assert lm_tokens("the cat", "char") == ["t", "h", "e", "|", "c", "a", "t"]
    assert lm_tokens("the cat", "word") == ["the", "cat"]


def test_discounts_fall_back_on_tiny_counts():
    from collections import Counter

    d = discounts(Counter({("a",): 1, ("b",): 1}))
    assert all(0 < dk < k for dk, k in zip(d, (1, 2, 3)))


def test_lexicon_from_an_lm_vocabulary_spells_what_it_can():
    spell = lambda w: list(w.lower()) if w.isalpha() else None  # noqa: E731
    lexicon, skipped = lexicon_from_words(["<s>", "</s>", "<unk>", "THE", "cat", "r2d2"], spell)
    assert lexicon == {"THE": [["t", "h", "e"]], "cat": [["c", "a", "t"]]} and skipped == 1


def test_every_spelling_ends_with_the_word_boundary_once(tmp_path):
    """flashlight's lexicon search ends a word only at its spelling's end: with the boundary there, a word
    ends where the model emits a space (torchaudio's lexicons are written the same way)."""
    given = tmp_path / "given.txt"
    given.write_text("cat c a t |\nnine n i n e\ne\n")  # torchaudio's form, flashlight's form, a word alone
    spell = lambda w: list(w)  # noqa: E731
    lexicon, skipped = read_lexicon(given, spell, {"a", "c", "e", "i", "n", "t", "|"})
    assert lexicon == {"cat": [["c", "a", "t"]], "nine": [["n", "i", "n", "e"]], "e": [["e"]]} and skipped == 0
    written = write_lexicon(lexicon, tmp_path / "lexicon.txt").read_text().splitlines()
    assert written == ["cat\tc a t |", "nine\tn i n e |", "e\te |"]
