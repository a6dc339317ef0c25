import pytest

from asr.text import CharTokenizer, TextNormalizer


def test_normalizer_lowercases_folds_accents_and_strips_punctuation():
    n = TextNormalizer()
    assert n("Hello, World!") == "hello world"
    assert n("Café  Ñandú") == "cafe nandu"
    assert n("Don\u2019t stop \u2014 \u201cnow\u201d ' .") == "don't stop now"
    assert n("MR. SMITH'S DOG") == "mr smith's dog"


def test_normalizer_keeps_characters_it_cannot_map():
    # Digits are not spelled out; they survive so the caller can report them (never silently dropped).
    assert TextNormalizer()("Room 42") == "room 42"


def test_tokenizer_round_trip():
    tok = CharTokenizer()
    text = tok.normalize("It's a TEST of the tokenizer")
    ids = tok.encode(text)
    assert 0 not in ids  # id 0 is the CTC blank
    assert tok.decode(ids) == "it's a test of the tokenizer"
    assert tok.symbols[:2] == ["<blank>", " "]
    assert len(tok) == 29


def test_tokenizer_reports_unknown_characters():
    tok = CharTokenizer()
    assert tok.unknown("abc 42") == {"4", "2"}
    with pytest.raises(ValueError, match="'24'"):
        tok.encode("abc 42")


def test_tokenizer_serializes():
    tok = CharTokenizer("abc", TextNormalizer(lowercase=False))
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.symbols == tok.symbols and again.normalizer == tok.normalizer


def test_tokenizer_from_texts_builds_any_alphabet():
    tok = CharTokenizer.from_texts(["Привет мир", "мир"])
    assert tok.decode(tok.encode(tok.normalize("Мир"))) == "мир"


def test_decode_skips_blanks_and_collapses_spaces():
    tok = CharTokenizer()
    a, b = tok.encode("a"), tok.encode("b")
    assert tok.decode([0, *a, 1, 1, 0, *b, 1]) == "a b"
