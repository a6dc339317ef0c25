"""N-gram language models for beam search: text -> ARPA file (Kneser-Ney); ARPA and lexicon checks.

In: sentences of text (normalized here with a :class:`~asr.text.TextNormalizer`). Out: an ARPA file,
tab-separated as KenLM reads it::

    \\data\\
    ngram 1=<count>
    ...
    \\1-grams:
    <log10 p(w)><TAB><w><TAB><log10 backoff(w)>
    \\2-grams:
    <log10 p(w2|w1)><TAB><w1> <w2><TAB><log10 backoff(w1 w2)>
    ...
    \\end\\

The estimate is interpolated modified Kneser-Ney (Chen & Goodman 1998) as KenLM's ``lmplz`` makes
it, without pruning: continuation counts below the highest order, three discounts per order from
the counts of counts, the unigrams interpolated with the uniform distribution (which gives
``<unk>`` its probability). It is plain Python: fine for the transcripts of a corpus (millions of
words); for a web-scale text use KenLM's ``lmplz`` and load its ARPA or binary file as it is.

Two units: ``word`` (words are the LM's tokens; the decoder needs a lexicon, made from the LM's
own vocabulary) and ``char`` (each character is a token and ``|`` the space between words: the
decoder's lexicon-free mode scores every emitted symbol with it).

Bad files raise :class:`LMError`, one line naming the file and the fix.
"""

from __future__ import annotations

import gzip
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Sequence

from asr.files import atomic_write
from asr.text import TextNormalizer

SENTENCE_START, SENTENCE_END, UNKNOWN = "<s>", "</s>", "<unk>"
SPECIAL_WORDS = frozenset({SENTENCE_START, SENTENCE_END, UNKNOWN})
WORD_BOUNDARY = "|"  # the token for the space between words, in char LMs and in the beam decoder
UNITS = ("word", "char")
DEFAULT_ORDER = {"word": 3, "char": 6}  # n-gram order when none is given
NEVER_LOG10 = -99.0  # log10 p(<s>): the sentence start is never predicted (what KenLM writes)
# Discounts used for an order whose counts of counts cannot give the Chen & Goodman estimate
# (tiny corpora: no n-gram seen exactly once, twice, ...). Each stays below the count it discounts.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
KENLM_BINARY_MAGIC = b"mmap lm "  # first bytes of a KenLM binary file
GZIP_MAGIC = b"\x1f\x8b"
ARPA_LINES_CHECKED = 200  # n-gram lines read by check_lm_file to spot a space-separated ARPA

Ngram = tuple[str, ...]


class LMError(ValueError):
    """A language model, lexicon or text file that cannot be used; the message names it and the fix."""


# --- building -------------------------------------------------------------------------------------


def lm_tokens(normalized: str, unit: str) -> list[str]:
    """A normalized sentence -> the LM's tokens: its words, or its characters with ``|`` between words."""
    words = normalized.split()
    if unit == "word":
        return words
    return list(f" {WORD_BOUNDARY} ".join(" ".join(w) for w in words).split())


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Raw counts of every n-gram up to ``order`` ending at a predicted token (``<s>`` padded,
    ``</s>`` appended). Index ``n - 1`` holds the n-grams."""
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [SENTENCE_START, *sentence, SENTENCE_END]
        for i in range(1, len(tokens)):
            for n in range(1, min(order, i + 1) + 1):
                counts[n - 1][tuple(tokens[i - n + 1 : i + 1])] += 1
    return counts


def adjusted_counts(raw: list[Counter]) -> list[Counter]:
    """Kneser-Ney counts: raw at the highest order and for n-grams that start with ``<s>``; below,
    the number of distinct words seen to the left of the n-gram (its continuation count)."""
    adjusted = [Counter() for _ in raw]
    adjusted[-1] = Counter(raw[-1])
    for n in range(len(raw) - 1):
        left = Counter(g[1:] for g in raw[n + 1])
        adjusted[n] = Counter({g: c if g[0] == SENTENCE_START else left[g] for g, c in raw[n].items()})
    return adjusted


def discounts(counts: Counter) -> tuple[float, float, float]:
    """(D1, D2, D3+) of one order from its counts of counts (Chen & Goodman's estimate)."""
    t = Counter(min(c, 4) for c in counts.values())
    if all(t[k] > 0 for k in (1, 2, 3, 4)):
        y = t[1] / (t[1] + 2 * t[2])
        d = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
        if all(0 < dk < k for dk, k in zip(d, (1, 2, 3))):
            return d  # type: ignore[return-value]
    return FALLBACK_DISCOUNTS


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


def kneser_ney(sentences: Iterable[Sequence[str]], order: int) -> NgramModel:
    """Interpolated modified Kneser-Ney estimate of token sentences (see the module docstring)."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    adjusted = adjusted_counts(count_ngrams(sentences, order))
    if not adjusted[0]:
        raise LMError("no text to build a language model from")
    vocab_size = len({g[0] for g in adjusted[0]} | {UNKNOWN})  # <s> is never predicted, never counted
    probs: list[dict[Ngram, float]] = []
    gammas: list[dict[Ngram, float]] = []
    for n, counts in enumerate(adjusted, 1):
        d = discounts(counts)
        totals: dict[Ngram, float] = defaultdict(float)
        mass: dict[Ngram, float] = defaultdict(float)
        for g, c in counts.items():
            totals[g[:-1]] += c
            mass[g[:-1]] += d[min(c, 3) - 1]
        gamma = {h: mass[h] / totals[h] for h in totals}
        level = {}
        for g, c in counts.items():
            lower = probs[-1][g[1:]] if n > 1 else 1.0 / vocab_size
            level[g] = (c - d[min(c, 3) - 1]) / totals[g[:-1]] + gamma[g[:-1]] * lower
        probs.append(level)
        gammas.append(gamma)
    if (UNKNOWN,) not in probs[0]:
        probs[0][(UNKNOWN,)] = gammas[0][()] / vocab_size
    return _as_arpa(probs, gammas)


def _as_arpa(probs: list[dict[Ngram, float]], gammas: list[dict[Ngram, float]]) -> NgramModel:
    """Interpolated probabilities + interpolation weights -> ARPA entries (the weights are the back-offs)."""
    orders = []
    for n, level in enumerate(probs):
        contexts = gammas[n + 1] if n + 1 < len(gammas) else {}
        entries = {g: (math.log10(p), math.log10(contexts[g]) if g in contexts else 0.0) for g, p in level.items()}
        if n == 0:
            start = (SENTENCE_START,)
            entries[start] = (NEVER_LOG10, math.log10(contexts[start]) if start in contexts else 0.0)
        orders.append(entries)
    return NgramModel(orders)


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


def read_texts(paths: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Sentences from text files (one per line), JSON-lines manifests (``.jsonl``: each ``text``) and
    LibriSpeech-layout folders (each ``*.trans.txt`` line after its utterance id)."""
    from asr.data.manifest import ManifestError, read_manifest

    for path in map(Path, paths):
        if path.is_dir():
            transcripts = sorted(path.rglob("*.trans.txt"))
            if not transcripts:
                raise LMError(f"{path}: no *.trans.txt transcripts in this folder; give text files or manifests")
            for trans in transcripts:
                yield from (line.partition(" ")[2] for line in trans.read_text(encoding="utf-8").splitlines())
            continue
        if path.suffix == ".jsonl":
            try:
                yield from (u.text for u in read_manifest(path))
            except ManifestError as err:
                raise LMError(str(err)) from None
            continue
        if not path.is_file():
            raise LMError(f"{path}: text file not found")
        with _open_text(path) as f:
            yield from f


def build_arpa(texts: Iterable[str], path: str | os.PathLike, order: int | None = None, unit: str = "word",
               normalizer: TextNormalizer | None = None) -> NgramModel:
    """Normalize ``texts`` (one sentence each), estimate a Kneser-Ney model and write it to ``path``."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    normalizer = normalizer or TextNormalizer()
    sentences = [tokens for tokens in (lm_tokens(normalizer(t), unit) for t in texts) if tokens]
    if not sentences:
        raise LMError(f"{path}: the text is empty after normalization; nothing to build a language model from")
    model = kneser_ney(sentences, order or DEFAULT_ORDER[unit])
    write_arpa(model, path)
    return model


# --- reading and checking -------------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
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
    with _open_text(path) as f:
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
    with _open_text(path) as f:
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
