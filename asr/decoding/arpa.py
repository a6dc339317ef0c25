"""ARPA n-gram files and lexicons for beam search: a file -> checked, read or rewritten; word lists -> lexicons.

An ARPA file, tab-separated as KenLM reads it (``asr.decoding.ngram`` writes them)::

    \\data\\
    ngram 1=<count>
    ...
    \\1-grams:
    <log10 p(w)><TAB><w><TAB><log10 backoff(w)>
    \\2-grams:
    <log10 p(w2|w1)><TAB><w1> <w2><TAB><log10 backoff(w1 w2)>
    ...
    \\end\\

:func:`check_lm_file` tells an ARPA file (maybe gzipped) from a KenLM binary and spots a
space-separated ARPA (:func:`fix_arpa_tabs` rewrites it); :func:`read_arpa` reads one into an
:class:`NgramModel`. Lexicons (:func:`read_lexicon`, :func:`lexicon_from_words`,
:func:`write_lexicon`) map words to their spellings in the decoder's tokens.

Bad files raise :class:`LMError`, one line naming the file and the fix.
"""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from asr.files import atomic_write

SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"
SPECIAL_WORDS = frozenset({SENTENCE_START, SENTENCE_END, UNKNOWN})
WORD_BOUNDARY = "|"  # the token for the space between words, in char LMs and in the beam decoder
NEVER_LOG10 = -99.0  # log10 p(<s>): the sentence start is never predicted (what KenLM writes)
KENLM_BINARY_MAGIC = b"mmap lm "  # first bytes of a KenLM binary file
GZIP_MAGIC = b"\x1f\x8b"
ARPA_LINES_CHECKED = 200  # n-gram lines read by check_lm_file to spot a space-separated ARPA

Ngram = tuple[str, ...]


class LMError(ValueError):
    """A language model, lexicon or text file that cannot be used; the message names it and the fix."""


@dataclass
class NgramModel:
    """An n-gram model as an ARPA file holds it: per order, n-gram -> (log10 p, log10 backoff)."""

    orders: list[dict[Ngram, tuple[float, float]]]

    @property
    def order(self) -> int:
        return len(self.orders)

    def vocabulary(self) -> list[str]:
        return [g[0] for g in self.orders[0]]

    def log10prob(self, context: Sequence[str], word: str) -> float:
        """log10 p(word | context) with ARPA back-off semantics (what KenLM computes)."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(context) + 1):
            gram = (*context[start:], word)
            entry = self.orders[len(gram) - 1].get(gram)
            if entry is not None:
                return entry[0] + backoff
            history = self.orders[len(gram) - 2].get(context[start:]) if len(gram) > 1 else None
            backoff += history[1] if history is not None else 0.0
        return self.orders[0][(UNKNOWN,)][0] + backoff



def write_arpa(model: NgramModel, path: str | os.PathLike) -> Path:
    """Write ``model`` as a tab-separated ARPA file, atomically."""
    with atomic_write(path) as f:
        f.write("\\data\\\n")
        for n, entries in enumerate(model.orders, 1):
            f.write(f"ngram {n}={len(entries)}\n")
        for n, entries in enumerate(model.orders, 1):
            f.write(f"\n\\{n}-grams:\n")
            highest = n == model.order
            for gram, (logp, backoff) in sorted(entries.items()):
                tail = "" if highest else f"\t{backoff:.7g}"
                f.write(f"{logp:.7g}\t{' '.join(gram)}{tail}\n")
        f.write("\n\\end\\\n")
    return Path(path)



# --- reading and checking -------------------------------------------------------------------------


def open_text(path: Path) -> IO[str]:
    if _head(path, len(GZIP_MAGIC)) == GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def lm_kind(path: str | os.PathLike) -> str:
    """"binary" (KenLM's mmap format) or "arpa" (text, maybe gzipped). Raises LMError if missing."""
    path = Path(path)
    if not path.is_file():
        raise LMError(f"{path}: language model not found; give an ARPA file (scripts/build_lm.py makes one) "
                      "or a KenLM binary")
    return "binary" if _head(path, len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC else "arpa"


def _arpa_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                yield lineno, line.rstrip("\n")
        except (UnicodeDecodeError, OSError, EOFError) as err:
            raise LMError(f"{path}: not a text ARPA file or KenLM binary ({err.__class__.__name__})") from None


def check_lm_file(path: str | os.PathLike) -> str:
    """Check that ``path`` is a KenLM binary or a tab-separated ARPA file; return its kind.

    Reads only the header and the first ARPA_LINES_CHECKED n-gram lines. Raises LMError naming the
    file, the line and the fix (an ARPA file whose fields are separated by spaces is the usual case).
    """
    path = Path(path)
    kind = lm_kind(path)
    if kind == "binary":
        return kind
    header_seen, checked = False, 0
    for lineno, line in _arpa_lines(path):
        if not header_seen:
            if line.strip() == "\\data\\":
                header_seen = True
            elif line.strip():
                break
            continue
        if not line.strip() or line.startswith("\\") or line.startswith("ngram "):
            if line.strip() == "\\end\\":
                return kind
            continue
        if "\t" not in line:
            raise LMError(f"{path}:{lineno}: ARPA fields are separated by spaces, KenLM needs tabs "
                          f"(log10 prob<TAB>words<TAB>backoff); fix it with "
                          f"scripts/build_lm.py --fix-tabs {path} -o FIXED.arpa")
        checked += 1
        if checked >= ARPA_LINES_CHECKED:
            return kind
    if not header_seen:
        raise LMError(f"{path}: not an ARPA language model (no \\data\\ header) nor a KenLM binary; "
                      "build one with scripts/build_lm.py")
    return kind


def _arpa_sections(path: Path, last_order: int | None = None) -> Iterator[tuple[int, int, str]]:
    """(order, line number, entry line) of each n-gram line, up to ``last_order``."""
    order = 0
    for lineno, line in _arpa_lines(path):
        stripped = line.strip()
        if stripped.startswith("\\") and stripped.endswith("-grams:"):
            order = int(stripped[1:].split("-")[0])
            if last_order is not None and order > last_order:
                return
        elif stripped == "\\end\\":
            return
        elif order and stripped:
            yield order, lineno, line


def _parse_entry(path: Path, order: int, lineno: int, line: str) -> tuple[Ngram, float, float]:
    fields = line.split("\t")
    try:
        gram = tuple(fields[1].split())
        if len(gram) != order or len(fields) > 3:
            raise ValueError
        return gram, float(fields[0]), float(fields[2]) if len(fields) == 3 else 0.0
    except (ValueError, IndexError):
        raise LMError(f"{path}:{lineno}: not an ARPA {order}-gram line (log10 prob<TAB>words<TAB>backoff); "
                      "rebuild the file with scripts/build_lm.py") from None


def arpa_vocabulary(path: str | os.PathLike) -> list[str]:
    """The words of an ARPA file's unigram section (``<s>``, ``</s>`` and ``<unk>`` included)."""
    path = Path(path)
    check_lm_file(path)
    return [_parse_entry(path, o, n, line)[0][0] for o, n, line in _arpa_sections(path, last_order=1)]


def read_arpa(path: str | os.PathLike) -> NgramModel:
    """Read a whole ARPA file (for small models and tests; KenLM reads large ones)."""
    path = Path(path)
    check_lm_file(path)
    orders: list[dict[Ngram, tuple[float, float]]] = []
    for order, lineno, line in _arpa_sections(path):
        while len(orders) < order:
            orders.append({})
        gram, logp, backoff = _parse_entry(path, order, lineno, line)
        orders[order - 1][gram] = (logp, backoff)
    return NgramModel(orders)


def fix_arpa_tabs(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Rewrite a space-separated ARPA file with tabs (the n-gram order says where the words end).

    Returns the number of n-gram lines written.
    """
    src, n_lines = Path(src), 0
    lm_kind(src)
    with atomic_write(dst) as out:
        order = 0
        for lineno, line in _arpa_lines(src):
            stripped = line.strip()
            if stripped.startswith("\\") and stripped.endswith("-grams:"):
                order = int(stripped[1:].split("-")[0])
            elif stripped == "\\end\\":
                order = 0
            elif order and stripped:
                fields = stripped.split()
                if len(fields) not in (order + 1, order + 2):
                    raise LMError(f"{src}:{lineno}: expected {order + 1} or {order + 2} fields for a "
                                  f"{order}-gram, found {len(fields)}")
                line = "\t".join([fields[0], " ".join(fields[1:order + 1]), *fields[order + 1:]])
                n_lines += 1
            out.write(line + "\n")
    return n_lines


# --- lexicons -------------------------------------------------------------------------------------

Spell = Callable[[str], "list[str] | None"]  # a word -> its decoder tokens, or None if it cannot be spelled


def read_lexicon(path: str | os.PathLike, spell: Spell, tokens: set[str]) -> tuple[dict[str, list[list[str]]], int]:
    """A lexicon file -> ({word: [spelling, ...]}, number of words left out).

    Each line is a word, optionally followed by its spelling in decoder tokens separated by spaces
    (flashlight's format: ``cat c a t``, or torchaudio's ``cat c a t |``: a final word boundary is
    dropped here and written back by :func:`write_lexicon`); a word alone is spelled with ``spell``
    and left out if it cannot be. A given spelling must use only ``tokens``.
    """
    path = Path(path)
    if not path.is_file():
        raise LMError(f"{path}: lexicon not found; give a word list (one word per line) or leave --lexicon "
                      "out to use the language model's own words")
    lexicon: dict[str, list[list[str]]] = defaultdict(list)
    skipped = 0
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            word, spelling = fields[0], _without_boundary(fields[1:]) or spell(fields[0])
            if spelling is None:
                skipped += 1
                continue
            unknown = sorted(set(spelling) - tokens)
            if unknown:
                raise LMError(f"{path}:{lineno}: the spelling of {word!r} uses {' '.join(unknown)}, which the "
                              f"model does not emit; list the word alone and it is spelled with the model's alphabet")
            if spelling not in lexicon[word]:
                lexicon[word].append(spelling)
    if not lexicon:
        raise LMError(f"{path}: no word in the lexicon can be spelled with the model's alphabet")
    return dict(lexicon), skipped


def lexicon_from_words(words: Iterable[str], spell: Spell) -> tuple[dict[str, list[list[str]]], int]:
    """A word list (an LM's vocabulary) -> ({word: [spelling]}, number of words left out)."""
    lexicon, skipped = {}, 0
    for word in words:
        if word in SPECIAL_WORDS:
            continue
        spelling = spell(word)
        if spelling is None:
            skipped += 1
        else:
            lexicon[word] = [spelling]
    return lexicon, skipped


def _without_boundary(spelling: list[str]) -> list[str]:
    """A spelling without the word boundary it may end with (torchaudio's lexicons end with ``|``)."""
    return spelling[:-1] if spelling and spelling[-1] == WORD_BOUNDARY else spelling


def write_lexicon(lexicon: dict[str, list[list[str]]], path: str | os.PathLike) -> Path:
    """Write a lexicon for flashlight's lexicon search: one ``word<TAB>t o k e n s |`` line per spelling.

    Every spelling ends with the word boundary ``|`` (the space, flashlight's silence token), as in
    torchaudio's lexicons: a word then ends only where the model emits a space. Without it a word can
    end at any frame, on the first frame of its last letter: a word made of letters that are words
    themselves ("nine": "n", "i", "n", "e") is read as several, and a last letter held for more than
    one frame has to be read as something else.
    """
    with atomic_write(path) as f:
        for word, spellings in lexicon.items():
            for spelling in spellings:
                f.write(f"{word}\t{' '.join([*_without_boundary(spelling), WORD_BOUNDARY])}\n")
    return Path(path)
