"""Beam search: CTC log-probabilities -> token id sequences and words, with a lexicon and a KenLM n-gram.

:class:`BeamDecoder` is CTC prefix beam search with flashlight-text through
``torchaudio.models.decoder.ctc_decoder`` (CPU), called as every decoder is
(``decoder(log_probs, lengths) -> list[Hypothesis]``, :mod:`asr.decoding.greedy`), optionally with
a KenLM n-gram (:mod:`asr.decoding.arpa`); :func:`build_decoder` makes the decoder a
:class:`~asr.decoding.options.DecodeOptions` describes:

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
    token is. Every spelling ends with ``|`` (:func:`asr.decoding.arpa.write_lexicon`, as torchaudio's
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from asr.decoding.arpa import (
    SPECIAL_WORDS,
    UNKNOWN,
    WORD_BOUNDARY,
    LMError,
    arpa_vocabulary,
    check_lm_file,
    lexicon_from_words,
    read_lexicon,
    write_lexicon,
)
from asr.decoding.greedy import Decoder, GreedyDecoder, Hypothesis
from asr.decoding.options import DecodeOptions, DecodeOptionsError
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

IMPOSSIBLE = -1e9  # log-prob of the symbols that cannot be emitted in the frame appended by _end_with_boundary


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
        self.boundary = self._tokens.index(WORD_BOUNDARY)
        self._decoder = self._build()

    def stream_search(self) -> Any:
        """A search of its own for one stream (torchaudio's CTCDecoder, stepped with ``decode_step``),
        sharing the loaded LM; a lexicon's trie is built again for it."""
        return self._build()

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
            searched = _end_with_boundary(emissions, lengths, self.boundary)
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

