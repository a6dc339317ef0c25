"""Text: transcripts -> normalized strings -> token ids, and back.

``TextNormalizer`` turns a raw transcript into the form the model predicts and WER is scored
on: lower case, accents folded (é -> e), typographic apostrophes unified, punctuation and symbols
replaced by spaces, whitespace collapsed. It never drops a letter silently: characters outside
the tokenizer's alphabet survive normalization, and :meth:`CharTokenizer.unknown` names them so
callers can report the utterance instead of crashing inside the CTC loss.

``CharTokenizer`` maps characters to ids with the CTC blank at id 0. It is saved in every
checkpoint (``to_dict``/``from_dict``) so a model is decoded with the alphabet it was trained on.
This module imports nothing else from ``asr``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

BLANK = "<blank>"  # the CTC blank symbol, always id 0
DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz'"  # English letters and the apostrophe; space is added

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class TextNormalizer:
    """Raw transcript -> normalized transcript (see the module docstring).

    Args:
        lowercase: fold case.
        fold_accents: decompose accented letters and drop the combining marks.
        keep: characters that are never replaced by a space even if Unicode calls them
            punctuation (the apostrophe by default: "don't").
    """

    lowercase: bool = True
    fold_accents: bool = True
    keep: str = "'"

    def __call__(self, text: str) -> str:
        text = text.translate(_APOSTROPHES)
        if self.lowercase:
            text = text.lower()
        if self.fold_accents:
            text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        text = "".join(" " if self._is_separator(c) else c for c in text)
        # A word made only of kept characters (a stray quote mark) is not spoken.
        return " ".join(w for w in text.split() if w.strip(self.keep))

    def _is_separator(self, char: str) -> bool:
        if char in self.keep:
            return False
        return unicodedata.category(char)[0] in "PSZC"

    def to_dict(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase, "fold_accents": self.fold_accents, "keep": self.keep}


class CharTokenizer:
    """Characters <-> ids. Id 0 is the CTC blank, id 1 the space, then ``alphabet`` in order."""

    def __init__(self, alphabet: str = DEFAULT_ALPHABET, normalizer: TextNormalizer | None = None) -> None:
        if " " in alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must list distinct characters and no space, got {alphabet!r}")
        self.alphabet = alphabet
        self.normalizer = normalizer or TextNormalizer()
        self.symbols: list[str] = [BLANK, " ", *alphabet]
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    blank: int = 0

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return self.normalizer(text)

    def unknown(self, normalized: str) -> set[str]:
        """Characters of an already normalized text that have no id."""
        return {c for c in normalized if c not in self._ids}

    def encode(self, normalized: str) -> list[int]:
        """Normalized text -> ids. Raises ValueError naming the characters that have no id."""
        missing = self.unknown(normalized)
        if missing:
            raise ValueError(f"characters {''.join(sorted(missing))!r} are not in the alphabet {self.alphabet!r}")
        return [self._ids[c] for c in normalized]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (blanks and repeats already removed) -> text; blanks are skipped, spaces collapsed."""
        text = "".join(self.symbols[i] for i in ids if i != self.blank)
        return _SPACES.sub(" ", text).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "alphabet": self.alphabet, "normalizer": self.normalizer.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        if d.get("type", "char") != "char":
            raise ValueError(f"unknown tokenizer type {d.get('type')!r}; this version knows 'char'")
        return cls(d["alphabet"], TextNormalizer(**d.get("normalizer", {})))

    @classmethod
    def from_texts(cls, texts: Sequence[str], normalizer: TextNormalizer | None = None) -> CharTokenizer:
        """An alphabet made of every character seen in ``texts`` after normalization (for any language)."""
        normalizer = normalizer or TextNormalizer()
        chars = sorted({c for t in texts for c in normalizer(t)} - {" "})
        return cls("".join(chars), normalizer)
