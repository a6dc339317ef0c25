"""Decoding wing: CTC log-probs -> token ids, words and text (greedy, or beam search with an n-gram LM).

In: log-probs ``(batch, frames, vocab)`` float and their lengths ``(batch,)`` int64, from the model
(:mod:`asr.model`) or an export of it. Out: one :class:`Hypothesis` per utterance (token ids, the
frame of each, a score, and the lexicon's words for a lexicon search); :func:`hypothesis_text`
turns it into normalized text.

- ``greedy``: :class:`GreedyDecoder` (batched, on any device) and the :class:`Hypothesis` every decoder returns.
- ``beam``: :class:`BeamDecoder` (flashlight-text CTC beam search, lexicon, KenLM) and :func:`build_decoder`.
- ``streaming``: the same decoders over frames arriving in order: committed tokens and a partial tail.
- ``options``: :class:`DecodeOptions`, every knob, checked once; the ``.decoding.json`` tune_lm.py stores.
- ``arpa``: ARPA files and lexicons, checked and read; ``ngram``: Kneser-Ney n-gram LMs built from text.
"""

from asr.decoding.arpa import LMError
from asr.decoding.beam import BeamDecoder, build_decoder
from asr.decoding.greedy import Decoder, GreedyDecoder, Hypothesis, hypothesis_text
from asr.decoding.options import DecodeOptions, DecodeOptionsError, load_options, stored_options

__all__ = ["BeamDecoder", "DecodeOptions", "DecodeOptionsError", "Decoder", "GreedyDecoder", "Hypothesis", "LMError",
           "build_decoder", "hypothesis_text", "load_options", "stored_options"]
