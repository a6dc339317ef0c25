"""Decoding: CTC log-probabilities -> token id sequences (and words, with a lexicon).

Decoders share one call, ``decoder(log_probs, lengths) -> list[Hypothesis]``, with
``log_probs`` of shape ``(batch, frames, vocab)`` and ``lengths`` of shape ``(batch,)``, so the
greedy decoder and the beam-search decoder can replace each other anywhere.

- :class:`GreedyDecoder`: the best symbol per frame; batched, on the log-probs' device.
- :class:`BeamDecoder`: CTC prefix beam search with flashlight-text through
  ``torchaudio.models.decoder.ctc_decoder`` (CPU), optionally with a KenLM n-gram:

  ============================  =======================================================================
  options                       search
  ============================  =======================================================================
  no ``lm``, no ``lexicon``     lexicon-free beam search over the model's symbols
  ``lm`` of words (ARPA/bin)    lexicon search: only the lexicon's words; the lexicon is ``lexicon``
                                or, when left out, every word of the ARPA's unigrams spelled with the
                                model's alphabet (words it cannot spell are left out)
  ``lm`` of characters          lexicon-free search, the LM scoring every symbol (``|`` = space);
                                made with ``scripts/build_lm.py --unit char``
  ``lexicon`` without ``lm``    lexicon search without LM scores (closed vocabulary)
  ============================  =======================================================================

  How flashlight scores a path, and how this module calls it (read from flashlight-text's
  ``LexiconDecoder``/``LexiconFreeDecoder``; log-probs are natural logs, the LM's are log10):

  - score = sum of the frames' log-probs + ``lm_weight`` x LM log10-probs + ``word_score`` per word
    (lexicon search) + ``sil_score`` per frame in which the silence token is emitted, held frames
    included. The silence token is the word boundary ``|`` (the model's space); the blank is the
    tokenizer's blank. Lexicon search: ``sil_score`` 0 (``word_score`` already counts the words).
    Lexicon-free search: ``word_score`` is passed as ``sil_score``, a bonus per frame of space.
  - Lexicon search walks a trie of the spellings; a word is emitted when its spelling's last
    token is. Every spelling ends with ``|`` (:func:`asr.lm.write_lexicon`, as torchaudio's
    lexicons), so words end where the model emits a space; without it a word ended on the first
    frame of its last letter, its held frames had to be read as something else, and a word made
    of one-letter words ("nine": "n", "i", "n", "e") came out as several.
  - The model emits no space after an utterance's last word, and flashlight's end of search keeps
    only hypotheses at a word boundary (a word not finished is dropped): a frame where only ``|``
    is possible is appended to each utterance for the lexicon search (:func:`_end_with_boundary`).
  - ``unk_score`` stays -inf (closed vocabulary: only lexicon words); ``log_add`` (option) merges
    hypotheses that reach the same state by adding probabilities instead of keeping the best.
  - With ``lm_weight`` 0, ``word_score`` 0 and ``log_add`` off, the search returns the best path:
    greedy's exactly without a lexicon, and with a lexicon whenever greedy's words are all in it
    (otherwise the best path spelling lexicon words). ``scripts/tune_lm.py`` always tries that point.

  torchaudio's ``cuda_ctc_decoder`` is not offered: it has no LM, and in torchaudio 2.11 it crashes
  on H100 GPUs for beam sizes of 8 and more (pytorch/audio#3754).

:class:`DecodeOptions` holds every knob, is validated once with messages that name the option,
and is what ``scripts/tune_lm.py`` stores beside a checkpoint (:func:`save_options`) for
``asr.load`` and ``scripts/decode.py`` to pick up (:func:`stored_options`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from asr.files import atomic_write
from asr.lm import (UNKNOWN, LMError, SPECIAL_WORDS, WORD_BOUNDARY, arpa_vocabulary, check_lm_file, lexicon_from_words,
                    read_lexicon, write_lexicon)
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

DECODERS = ("greedy", "beam")
LM_UNITS = ("auto", "word", "char")
OPTIONS_SUFFIX = ".decoding.json"  # tuned options live beside the checkpoint: last.ckpt -> last.decoding.json
_PATH_FIELDS = ("lm", "lexicon")
IMPOSSIBLE = -1e9  # log-prob of the symbols that cannot be emitted in the frame appended by _end_with_boundary


@dataclass
class Hypothesis:
    """One decoded utterance."""

    tokens: list[int]  # token ids, blanks and repeats removed
    frames: list[int] = field(default_factory=list)  # output frame at which each token was emitted
    score: float = 0.0  # log-probability of the path (greedy) or the beam's total score
    words: list[str] | None = None  # the lexicon's words (lexicon search); None: read the words off the tokens


class Decoder(Protocol):
    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]: ...


class DecodeOptionsError(ValueError):
    """Decoding options that cannot work; the message names the option and the fix."""


@dataclass(frozen=True)
class DecodeOptions:
    """How log-probs become text. Validated on construction (DecodeOptionsError)."""

    decoder: str = "greedy"  # "greedy" or "beam"
    beam_size: int = 50  # hypotheses kept after each frame (beam)
    beam_size_token: int | None = None  # symbols tried per frame; None = all of them
    beam_threshold: float = 25.0  # drop hypotheses scoring this much (log) below the best
    lm: str | None = None  # KenLM n-gram: ARPA (.arpa, .arpa.gz) or binary file; None = no LM
    lexicon: str | None = None  # words (one per line, or "word t o k e n s"); None = the LM's words
    lm_unit: str = "auto"  # what the LM's tokens are: "word", "char", or "auto" (read from the ARPA)
    lm_weight: float = 0.5  # weight of the LM's log10-probs (alpha); tune with scripts/tune_lm.py
    word_score: float = 0.0  # bonus per word (beta); lexicon-free (char LM): per frame of space, held frames too
    # A pause this long (seconds of blank) between two symbols ends a word even if the model emitted no
    # space there. Off (0) by default: it splits words on single utterances (+1 WER point on the
    # synthetic test set at 0.5 s), and long recordings already get a space at each pause where they
    # are cut (asr.windows).
    word_pause: float = 0.0
    # How hypotheses that reach the same search state are merged: False keeps the better one (Viterbi:
    # with lm_weight 0 and word_score 0 the search then returns greedy's path); True adds their
    # probabilities (closer to CTC's sum over alignments).
    log_add: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.log_add, bool):
            raise DecodeOptionsError(f"--log-add must be true or false, got {self.log_add!r}")
        if self.decoder not in DECODERS:
            raise DecodeOptionsError(f"--decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.lm_unit not in LM_UNITS:
            raise DecodeOptionsError(f"--lm-unit must be one of {', '.join(LM_UNITS)}, got {self.lm_unit!r}")
        if self.beam_size < 1:
            raise DecodeOptionsError(f"--beam-size must be at least 1, got {self.beam_size}")
        if self.beam_size_token is not None and self.beam_size_token < 1:
            raise DecodeOptionsError(f"--beam-size-token must be at least 1, got {self.beam_size_token}")
        for name in ("beam_threshold", "lm_weight", "word_score", "word_pause"):
            if not math.isfinite(getattr(self, name)):
                raise DecodeOptionsError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")
        if self.word_pause < 0:
            raise DecodeOptionsError(f"--word-pause must be 0 (off) or a positive number of seconds, got {self.word_pause}")
        if self.beam_threshold <= 0:
            raise DecodeOptionsError(f"--beam-threshold must be positive, got {self.beam_threshold}")
        if self.decoder == "greedy" and (self.lm or self.lexicon):
            raise DecodeOptionsError("--lm and --lexicon need --decoder beam (greedy decoding uses no LM)")
        if self.lm_unit == "char" and self.lexicon:
            raise DecodeOptionsError("--lexicon cannot be used with a character LM (--lm-unit char): "
                                     "lexicon-free search scores every symbol with the LM")

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with ``changes`` (None values are ignored), validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "options") -> DecodeOptions:
        from asr.config import ConfigError, signature_schema, typed  # the schema of every config in asr

        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise DecodeOptionsError(f"{source}: unknown decoding option(s) {', '.join(unknown)}")
        try:  # types first (a number given as text), then __post_init__'s ranges
            checked = typed(signature_schema(cls, target=False), d, "")
        except ConfigError as err:
            raise DecodeOptionsError(f"{source}: {err}") from None
        return cls(**dataclasses.asdict(checked))


# --- greedy ---------------------------------------------------------------------------------------


class GreedyDecoder:
    """Best path: the most likely symbol per frame, repeats collapsed, blanks removed.

    Runs batched on the log-probs' device and copies only the kept symbols to the host.
    """

    def __init__(self, blank: int = 0) -> None:
        self.blank = blank

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        best, ids = log_probs.max(dim=-1)  # (batch, frames)
        valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None].to(ids.device)
        changed = torch.ones_like(valid)
        changed[:, 1:] = ids[:, 1:] != ids[:, :-1]
        keep = valid & changed & (ids != self.blank)
        scores = (best * valid).sum(-1).tolist()
        ids, keep = ids.cpu(), keep.cpu()
        hyps = []
        for b in range(ids.shape[0]):
            frames = keep[b].nonzero().squeeze(-1)
            hyps.append(Hypothesis(ids[b, frames].tolist(), frames.tolist(), scores[b]))
        return hyps


# --- beam search ----------------------------------------------------------------------------------


def decoder_tokens(tokenizer: CharTokenizer) -> list[str]:
    """The tokenizer's symbols as the beam decoder names them: the space is ``|`` (as in char LMs
    and flashlight lexicons), every other symbol is itself."""
    return [WORD_BOUNDARY if s == " " else s for s in tokenizer.symbols]


def spell(tokenizer: CharTokenizer, word: str) -> list[str] | None:
    """A word -> its spelling in decoder tokens, or None if its normalized form is not one word of
    the tokenizer's alphabet."""
    normalized = tokenizer.normalize(word)
    if not normalized or " " in normalized or tokenizer.unknown(normalized):
        return None
    return list(normalized)


@dataclass(frozen=True)
class _SearchPlan:
    """What the flashlight decoder is built from."""

    lm: str | None
    lexicon: dict[str, list[list[str]]] | None  # None: lexicon-free


def _plan(options: DecodeOptions, tokenizer: CharTokenizer) -> _SearchPlan:
    """Resolve the LM unit and the lexicon (see the table in the module docstring)."""
    tokens = set(decoder_tokens(tokenizer))
    spell_word = lambda w: spell(tokenizer, w)  # noqa: E731
    kind = check_lm_file(options.lm) if options.lm else None
    vocab = arpa_vocabulary(options.lm) if kind == "arpa" and (options.lm_unit == "auto" or not options.lexicon) else []
    unit = options.lm_unit
    if kind is not None and unit == "auto":
        words = set(vocab) - SPECIAL_WORDS
        unit = "char" if words and words <= tokens else "word"
    if unit == "char" and kind is not None:
        if options.lexicon:
            raise DecodeOptionsError(f"{options.lm}: a character LM takes no --lexicon; leave it out")
        return _SearchPlan(options.lm, None)
    if options.lexicon:
        lexicon, skipped = read_lexicon(options.lexicon, spell_word, tokens)
        source = options.lexicon
    elif kind is None:
        return _SearchPlan(None, None)
    elif kind == "binary":
        raise DecodeOptionsError(f"{options.lm}: a KenLM binary does not list its words; give --lexicon "
                                 "(a word list, one word per line) or --lm-unit char for a character LM")
    else:
        lexicon, skipped = lexicon_from_words(vocab, spell_word)
        source = options.lm
        if not lexicon:
            raise LMError(f"{options.lm}: none of the LM's words can be spelled with the model's alphabet "
                          f"{tokenizer.alphabet!r}; build the LM from text in the model's language")
    if skipped:
        log.warning("%s: %d word(s) left out of the lexicon (not spelled with the model's alphabet)", source, skipped)
    return _SearchPlan(options.lm, lexicon)


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Keep KenLM's loading messages (printed by C++ on file descriptor 2) off the user's terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _kenlm(path: str, words: list[str]):
    """KenLM for ``path``, its word ids being positions in ``words`` (quiet; LMError if unreadable)."""
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError:
        from flashlight.lib.text.decoder import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    with _native_stderr_captured():
        try:
            return KenLM(path, Dictionary(words))
        except RuntimeError as err:  # KenLM's exceptions arrive as RuntimeError with a C++ location
            reason = str(err).split("because", 1)[-1].strip().splitlines()[0][:200]
            raise LMError(f"{path}: KenLM cannot read it ({reason})") from None


class BeamDecoder:
    """CTC beam search (flashlight-text) with an optional KenLM n-gram and lexicon; runs on the CPU.

    Args:
        tokenizer: the model's symbols; the blank is the tokenizer's, the space is the word boundary.
        options: beam size, LM, lexicon, weights (see :class:`DecodeOptions`).
    """

    def __init__(self, tokenizer: CharTokenizer, options: DecodeOptions,
                 _loaded: tuple[_SearchPlan, list[str], Any] | None = None) -> None:
        self.tokenizer, self.options, self.blank = tokenizer, options, tokenizer.blank
        self._tokens = decoder_tokens(tokenizer)
        if _loaded is None:
            plan = _plan(options, tokenizer)
            # Word ids shared by the LM, the lexicon's trie and the decoder: lexicon words, or the
            # tokens in order (lexicon-free search scores token i as LM word i).
            words = list(dict.fromkeys([*(plan.lexicon or self._tokens), UNKNOWN]))
            _loaded = (plan, words, _kenlm(plan.lm, words) if plan.lm else None)
        self._loaded = _loaded
        self.uses_lexicon = _loaded[0].lexicon is not None
        self._decoder = self._build()

    def _build(self) -> Any:
        from torchaudio.models.decoder import ctc_decoder

        plan, words, lm = self._loaded
        o = self.options
        with tempfile.TemporaryDirectory() as tmp:
            lexicon = write_lexicon(plan.lexicon, Path(tmp) / "lexicon.txt") if plan.lexicon else None
            lm_dict = Path(tmp) / "lm_dict.txt"
            lm_dict.write_text("\n".join(words) + "\n", encoding="utf-8")
            return ctc_decoder(
                lexicon=str(lexicon) if lexicon else None, tokens=self._tokens, lm=lm, lm_dict=str(lm_dict),
                beam_size=o.beam_size, beam_size_token=o.beam_size_token, beam_threshold=o.beam_threshold,
                lm_weight=o.lm_weight, word_score=o.word_score, sil_score=0.0 if self.uses_lexicon else o.word_score,
                log_add=o.log_add, blank_token=self._tokens[self.blank], sil_token=WORD_BOUNDARY)

    def with_weights(self, lm_weight: float, word_score: float) -> BeamDecoder:
        """The same search with other weights, reusing the loaded LM and lexicon (for tuning)."""
        options = dataclasses.replace(self.options, lm_weight=lm_weight, word_score=word_score)
        return BeamDecoder(self.tokenizer, options, self._loaded)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        emissions = log_probs.detach().float().cpu()
        lengths = lengths.detach().cpu().to(torch.int32)
        searched = (emissions, lengths)
        if self.uses_lexicon:
            searched = _end_with_boundary(emissions, lengths, self._tokens.index(WORD_BOUNDARY))
        hyps = []
        for result, length in zip(self._decoder(searched[0].contiguous(), searched[1]), lengths.tolist()):
            best = result[0]
            # flashlight's path has a word-boundary state before the first and after the last
            # frame: timestep t is frame t - 1; tokens outside the frames are those states.
            steps = best.timesteps.tolist()
            kept = [(tok, t - 1) for tok, t in zip(best.tokens.tolist(), steps) if 1 <= t <= length]
            hyps.append(Hypothesis([tok for tok, _ in kept], [t for _, t in kept], float(best.score),
                                   list(best.words) if self.uses_lexicon else None))
        return hyps


def _end_with_boundary(emissions: torch.Tensor, lengths: torch.Tensor,
                       boundary: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs with one more frame after each utterance's last, where only the word boundary is
    possible (log-prob 0, every other symbol IMPOSSIBLE): the lexicon search ends every word at a
    boundary, and the model emits none after the last word of an utterance."""
    batch, frames, vocab = emissions.shape
    padded = torch.full((batch, frames + 1, vocab), IMPOSSIBLE, dtype=emissions.dtype)
    padded[:, :frames] = emissions
    padded[torch.arange(batch), lengths.long()] = torch.where(torch.arange(vocab) == boundary, 0.0, IMPOSSIBLE)
    return padded, lengths + 1


def build_decoder(options: DecodeOptions, tokenizer: CharTokenizer) -> Decoder:
    """The decoder ``options`` describe. Raises DecodeOptionsError or LMError on bad options or files."""
    if options.decoder == "greedy":
        return GreedyDecoder(tokenizer.blank)
    return BeamDecoder(tokenizer, options)


def split_at_pauses(hyp: Hypothesis, space: int, min_gap: int) -> Hypothesis:
    """Insert a space between consecutive non-space symbols emitted ``min_gap`` or more frames apart
    (``min_gap`` < 1: unchanged). Lexicon hypotheses already have their words: unchanged."""
    if min_gap < 1 or hyp.words is not None or len(hyp.tokens) < 2:
        return hyp
    tokens, frames = [hyp.tokens[0]], [hyp.frames[0]]
    for tok, frame in zip(hyp.tokens[1:], hyp.frames[1:]):
        if frame - frames[-1] >= min_gap and tok != space and tokens[-1] != space:
            tokens.append(space)
            frames.append((frame + frames[-1]) // 2)
        tokens.append(tok)
        frames.append(frame)
    return Hypothesis(tokens, frames, hyp.score, None)


def hypothesis_text(hyp: Hypothesis, tokenizer: CharTokenizer) -> str:
    """The normalized text of a hypothesis: its lexicon words, or its tokens."""
    if hyp.words is not None:
        return tokenizer.normalize(" ".join(hyp.words))
    return tokenizer.decode(hyp.tokens)


# --- options stored with a model ------------------------------------------------------------------


def options_path(checkpoint: str | os.PathLike) -> Path:
    """Where the tuned decoding options of a checkpoint live: ``last.ckpt`` -> ``last.decoding.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + OPTIONS_SUFFIX)


def save_options(options: DecodeOptions, path: str | os.PathLike, **extra: Any) -> Path:
    """Write options as JSON (paths relative to the file's folder when inside it), plus ``extra``
    facts (how they were tuned) under ``"tuning"``."""
    path = Path(path)
    data = options.to_dict()
    for name in _PATH_FIELDS:
        if data[name]:
            target = Path(data[name]).resolve()
            folder = path.parent.resolve()
            data[name] = str(target.relative_to(folder)) if target.is_relative_to(folder) else str(target)
    with atomic_write(path) as f:
        json.dump({"decoding": data, **({"tuning": extra} if extra else {})}, f, indent=2)
        f.write("\n")
    return path


def load_options(path: str | os.PathLike) -> DecodeOptions:
    """Read options written by :func:`save_options` (or a JSON/YAML file with the same fields)."""
    path = Path(path)
    if not path.is_file():
        raise DecodeOptionsError(f"{path}: decoding options file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except ValueError as err:
        raise DecodeOptionsError(f"{path}: not valid {path.suffix[1:].upper()} ({err})") from None
    data = data.get("decoding", data) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise DecodeOptionsError(f"{path}: expected a mapping of decoding options")
    for name in _PATH_FIELDS:
        if data.get(name) and not os.path.isabs(data[name]):
            data[name] = str(path.parent / data[name])
    return DecodeOptions.from_dict(data, str(path))


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(str(err).splitlines()[0]) from None


def stored_options(checkpoint: str | os.PathLike) -> DecodeOptions | None:
    """The options tuned for ``checkpoint`` (``options_path``), or None if it has none."""
    path = options_path(checkpoint)
    return load_options(path) if path.is_file() else None
