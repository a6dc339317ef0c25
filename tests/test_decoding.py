"""Beam search (with and without an n-gram LM), decoding options, and the options stored with a model."""

from pathlib import Path

import pytest
import torch

from asr.decoding.arpa import LMError
from asr.decoding.beam import BeamDecoder, build_decoder
from asr.decoding.greedy import GreedyDecoder, hypothesis_text
from asr.decoding.ngram import build_arpa
from asr.decoding.options import (
    DecodeOptions,
    DecodeOptionsError,
    load_options,
    options_path,
    save_options,
    stored_options,
)
from asr.text import CharTokenizer
from tests.conftest import ROOT

TOK = CharTokenizer()
# Training text for the LMs: "cat" is frequent, "cad" rare, so the LM prefers "the cat sat".
LM_TEXT = ["the cat sat on the mat"] * 20 + ["a cat is here", "the mat is red", "a cad is rude"]


def spelled(text: str, ambiguous: dict[int, tuple[str, str, float]] | None = None) -> torch.Tensor:
    """(1, frames, vocab) log-probs that spell ``text`` one symbol per frame with a blank after each;
    ``ambiguous`` maps a character position to (acoustic favourite, rival, favourite's probability)."""
    frames = [c for ch in text for c in (ch, None)]
    x = torch.full((1, len(frames), len(TOK)), -12.0)
    for t, ch in enumerate(frames):
        x[0, t, TOK.blank if ch is None else TOK.encode(ch)[0]] = 0.0
    for pos, (best, rival, p) in (ambiguous or {}).items():
        x[0, 2 * pos, TOK.encode(best)[0]] = torch.tensor(p).log()
        x[0, 2 * pos, TOK.encode(rival)[0]] = torch.tensor(1 - p).log()
    return x.log_softmax(-1)


AMBIGUOUS = spelled("the cat sat", {6: ("d", "t", 0.6)})  # acoustics say "cad" (0.6 vs 0.4)
LENGTH = torch.tensor([AMBIGUOUS.shape[1]])


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "words.arpa"
    build_arpa(LM_TEXT, path, order=3, unit="word")
    return path


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "chars.arpa"
    build_arpa(LM_TEXT, path, order=5, unit="char")
    return path


def _text(decoder, log_probs=AMBIGUOUS, lengths=LENGTH) -> str:
    return hypothesis_text(decoder(log_probs, lengths)[0], TOK)


def test_beam_of_one_without_lm_is_greedy():
    torch.manual_seed(0)
    log_probs = torch.randn(4, 80, len(TOK)).mul(3).log_softmax(-1)
    lengths = torch.tensor([80, 61, 7, 1])
    greedy = GreedyDecoder(TOK.blank)(log_probs, lengths)
    beam = build_decoder(DecodeOptions("beam", beam_size=1), TOK)(log_probs, lengths)
    space = TOK.encode(" ")[0]
    for g, b in zip(greedy, beam):
        # flashlight merges a space in the first frame into its start-of-utterance boundary: compare
        # without leading and trailing spaces, which carry no text.
        strip = lambda h: [(t, f) for t, f in zip(h.tokens, h.frames) if not (t == space and f in (0, h.frames[-1]))]  # noqa: E731
        assert strip(b) == strip(g)
        assert b.score == pytest.approx(g.score, abs=1e-3)
        assert hypothesis_text(b, TOK) == hypothesis_text(g, TOK)


def test_wide_beam_without_lm_follows_the_acoustics():
    assert _text(build_decoder(DecodeOptions("beam"), TOK)) == "the cad sat"


def test_word_lm_from_the_training_text_fixes_the_ambiguous_word(word_lm):
    assert _text(GreedyDecoder(TOK.blank)) == "the cad sat"
    decoder = build_decoder(DecodeOptions("beam", lm=str(word_lm), lm_weight=1.0), TOK)
    hyp = decoder(AMBIGUOUS, LENGTH)[0]
    assert hyp.words == ["the", "cat", "sat"] and hypothesis_text(hyp, TOK) == "the cat sat"
    assert _text(decoder.with_weights(0.0, 0.0)) == "the cad sat", "LM weight 0: the acoustics decide again"


def test_char_lm_fixes_it_without_a_lexicon(char_lm):
    decoder = build_decoder(DecodeOptions("beam", lm=str(char_lm), lm_weight=1.0), TOK)
    assert not decoder.uses_lexicon
    assert _text(decoder) == "the cat sat"


def test_lexicon_without_lm_limits_the_words(tmp_path):
    (tmp_path / "words.txt").write_text("the\ncat\nsat\n")
    decoder = build_decoder(DecodeOptions("beam", lexicon=str(tmp_path / "words.txt")), TOK)
    assert _text(decoder) == "the cat sat"  # "cad" is not a word it may output


def test_beam_batch_equals_one_by_one(word_lm):
    decoder = build_decoder(DecodeOptions("beam", lm=str(word_lm)), TOK)
    other = spelled("a mat is red")
    batch = torch.full((2, other.shape[1], len(TOK)), -12.0)
    batch[0, : AMBIGUOUS.shape[1]], batch[1] = AMBIGUOUS[0], other[0]
    hyps = decoder(batch, torch.tensor([AMBIGUOUS.shape[1], other.shape[1]]))
    assert [hypothesis_text(h, TOK) for h in hyps] == [_text(decoder), _text(decoder, other, torch.tensor([other.shape[1]]))]


def test_frames_of_beam_hypotheses_are_emission_frames(word_lm):
    hyp = build_decoder(DecodeOptions("beam", lm=str(word_lm)), TOK)(AMBIGUOUS, LENGTH)[0]
    assert hyp.frames == list(range(0, 2 * len("the cat sat"), 2))


@pytest.mark.parametrize("changes, message", [
    ({"decoder": "viterbi"}, "--decoder must be one of greedy, beam"),
    ({"decoder": "beam", "beam_size": 0}, "--beam-size must be at least 1"),
    ({"decoder": "greedy", "lm": "x.arpa"}, "--lm and --lexicon need --decoder beam"),
    ({"decoder": "beam", "lm_weight": float("nan")}, "--lm-weight must be a finite number"),
    ({"decoder": "beam", "lm_unit": "char", "lexicon": "w.txt"}, "--lexicon cannot be used with a character LM"),
    ({"decoder": "beam", "log_add": "yes"}, "--log-add must be true or false"),
])
def test_bad_options_are_one_user_level_sentence(changes, message):
    with pytest.raises(DecodeOptionsError, match=message):
        DecodeOptions(**changes)


def test_missing_lm_and_lexicon_files_name_the_file_and_the_fix(tmp_path, word_lm):
    with pytest.raises(LMError, match=r"missing\.arpa: language model not found; .*build_lm\.py"):
        BeamDecoder(TOK, DecodeOptions("beam", lm=str(tmp_path / "missing.arpa")))
    with pytest.raises(LMError, match=r"nope\.txt: lexicon not found"):
        BeamDecoder(TOK, DecodeOptions("beam", lm=str(word_lm), lexicon=str(tmp_path / "nope.txt")))


def test_arpa_with_spaces_instead_of_tabs_is_one_line_with_the_fix(tmp_path, word_lm):
    spaced = tmp_path / "spaced.arpa"
    spaced.write_text(word_lm.read_text().replace("\t", " "))
    with pytest.raises(LMError) as err:
        BeamDecoder(TOK, DecodeOptions("beam", lm=str(spaced)))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{spaced}:")
    assert "separated by spaces, KenLM needs tabs" in message and "build_lm.py --fix-tabs" in message


def test_binary_lm_needs_a_lexicon(tmp_path):
    fake = tmp_path / "lm.bin"
    fake.write_bytes(b"mmap lm http://kheafield.com/code format version 5\0" + bytes(64))
    with pytest.raises(DecodeOptionsError, match="a KenLM binary does not list its words; give --lexicon"):
        BeamDecoder(TOK, DecodeOptions("beam", lm=str(fake)))


def test_lexicon_spelling_outside_the_alphabet_names_the_line(tmp_path):
    (tmp_path / "lex.txt").write_text("cat c a t\ndog d 0 g\n")
    with pytest.raises(LMError, match=r"lex\.txt:2: the spelling of 'dog' uses 0"):
        BeamDecoder(TOK, DecodeOptions("beam", lexicon=str(tmp_path / "lex.txt")))


def test_options_stored_beside_a_checkpoint_round_trip(tmp_path, word_lm):
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    lm = ckpt.parent / "lm.arpa"
    lm.write_bytes(word_lm.read_bytes())
    tuned = DecodeOptions("beam", lm=str(lm), lm_weight=0.75, word_score=1.0)
    path = save_options(tuned, options_path(ckpt), wer=0.1)
    assert path == tmp_path / "run" / "last.decoding.json"
    assert '"lm": "lm.arpa"' in path.read_text(), "a path inside the folder is stored relative to it"
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)  # the folder travels with its LM
    assert stored_options(moved / "last.ckpt") == tuned.replace(lm=str(moved / "lm.arpa"))
    assert stored_options(tmp_path / "other.ckpt") is None


def test_every_decode_preset_in_conf_is_valid_and_beam_matches_the_defaults():
    presets = {p.stem: load_options(p) for p in (ROOT / "asr" / "conf" / "decode").glob("*.yaml")}
    assert {"greedy", "beam"} <= set(presets)
    assert presets["beam"] == DecodeOptions(decoder="beam"), "asr/conf/decode/beam.yaml documents the defaults"


def test_unknown_option_in_a_file_is_named(tmp_path):
    (tmp_path / "o.yaml").write_text("decoder: beam\nbeam_width: 10\n")
    with pytest.raises(DecodeOptionsError, match=r"o\.yaml: unknown decoding option\(s\) beam_width"):
        load_options(tmp_path / "o.yaml")


def test_an_upper_case_arpa_as_librispeech_publishes_it(tmp_path, word_lm):
    def upper(line: str) -> str:
        fields = line.split("\t")
        if len(fields) > 1:
            fields[1] = " ".join(w if w in ("<s>", "</s>", "<unk>") else w.upper() for w in fields[1].split())
        return "\t".join(fields)

    arpa = tmp_path / "3-gram.arpa"
    arpa.write_text("\n".join(map(upper, word_lm.read_text().splitlines())) + "\n")
    hyp = build_decoder(DecodeOptions("beam", lm=str(arpa), lm_weight=1.0), TOK)(AMBIGUOUS, LENGTH)[0]
    assert hyp.words == ["THE", "CAT", "SAT"] and hypothesis_text(hyp, TOK) == "the cat sat"


# --- lexicon search: words end where the model emits a space --------------------------------------

# Single letters are words too, as in a corpus of spelled letters and digits: "nine" is also "n i n e".
LETTERS_AND_DIGITS = ["a", "e", "i", "n", "o", "one", "nine", "eight"]


def held(symbols: str) -> torch.Tensor:
    """(1, frames, vocab) log-probs with one frame per character of ``symbols``: ``_`` is the blank,
    ``|`` the space, and a character held for several frames is written several times."""
    x = torch.full((1, len(symbols), len(TOK)), -12.0)
    for t, ch in enumerate(symbols):
        x[0, t, TOK.blank if ch == "_" else TOK.encode(" " if ch == "|" else ch)[0]] = 0.0
    return x.log_softmax(-1)


@pytest.fixture(scope="module")
def letters_lexicon(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lexicon") / "words.txt"
    path.write_text("\n".join(LETTERS_AND_DIGITS) + "\n")
    return path


@pytest.mark.parametrize("symbols, words", [
    ("nnniiinnneee___||__eeeiiigghhhtt", ["nine", "eight"]),  # letters held for frames: still one word each
    ("n_i_n_e", ["nine"]),  # the last word of an utterance ends there, without a space after it
    ("___a_||_a__", ["a", "a"]),
    ("oo_nn_e||n_i_nne", ["one", "nine"]),
])
def test_lexicon_search_reads_the_words_greedy_reads(letters_lexicon, symbols, words):
    log_probs = held(symbols)
    lengths = torch.tensor([log_probs.shape[1]])
    assert _text(GreedyDecoder(TOK.blank), log_probs, lengths) == " ".join(words)
    hyp = build_decoder(DecodeOptions("beam", lexicon=str(letters_lexicon)), TOK)(log_probs, lengths)[0]
    assert hyp.words == words
    assert hyp.score == pytest.approx(GreedyDecoder(TOK.blank)(log_probs, lengths)[0].score, abs=1e-3), \
        "greedy's path, nothing paid for a boundary the model did not emit"


def _noisy_words(rng: torch.Generator, words: list[str], n_words: int) -> torch.Tensor:
    """Log-probs of ``n_words`` random words, each symbol held 1-3 frames with blanks and spaces between,
    and random rivals in every frame that never outscore the spoken symbol."""
    symbols = []
    for i in torch.randint(len(words), (n_words,), generator=rng).tolist():
        for ch in words[i]:
            frames, blanks = torch.randint(1, 4, (1,), generator=rng), torch.randint(0, 2, (1,), generator=rng)
            symbols += [ch] * int(frames) + ["_"] * int(blanks)
        symbols += ["|"] * int(torch.randint(1, 3, (1,), generator=rng))
    x = held("".join(symbols[:-1]))
    return (x + 2.0 * torch.rand(x.shape, generator=rng)).log_softmax(-1)  # 12 nats of margin, 2 of noise


def test_at_lm_weight_and_word_score_0_the_beam_is_greedy(letters_lexicon, tmp_path):
    """tune_lm.py's greedy-equivalent point: with a lexicon holding greedy's words (word LM) or without a
    lexicon (character LM), lm_weight 0 and word_score 0 give greedy's transcript."""
    rng = torch.Generator().manual_seed(0)
    texts = [" ".join(LETTERS_AND_DIGITS[i] for i in torch.randint(8, (5,), generator=rng).tolist()) for _ in range(30)]
    build_arpa(texts, tmp_path / "w.arpa", order=3, unit="word")
    build_arpa(texts, tmp_path / "c.arpa", order=5, unit="char")
    word = build_decoder(DecodeOptions("beam", lm=str(tmp_path / "w.arpa"), lm_weight=0.0), TOK)
    char = build_decoder(DecodeOptions("beam", lm=str(tmp_path / "c.arpa"), lm_weight=0.0), TOK)
    assert word.uses_lexicon and not char.uses_lexicon
    for _ in range(20):
        log_probs = _noisy_words(rng, LETTERS_AND_DIGITS, 6)
        lengths = torch.tensor([log_probs.shape[1]])
        greedy = _text(GreedyDecoder(TOK.blank), log_probs, lengths)
        assert _text(word, log_probs, lengths) == greedy
        assert _text(char, log_probs, lengths) == greedy
        assert _text(word.with_weights(1.0, 0.0), log_probs, lengths).count(" ") == greedy.count(" "), \
            "with the LM on, still one word per space"
