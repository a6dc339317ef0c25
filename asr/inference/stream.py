"""Streaming transcription: audio arriving in pieces -> committed words (never revised) and a partial tail.

    stream = asr.load("model.ckpt").stream()                 # the model's latency, or chunk=0.4, right_context=0.4
    update = stream.accept(samples)                          # float32 samples at stream.sample_rate, any count
    update.words        # [Word("hello", 0.52, 0.80, 0.97)]: new words, committed, times from the stream's start
    update.partial      # "wor": what follows them so far; may change
    update.endpoint     # True once per pause of `endpoint` seconds after speech: a line is over
    final = stream.finish()                                  # the last words; stream.transcript: all of it

A stream's audio goes through :class:`~asr.model.streaming.StreamingModel` (final log-probs as soon as
the latency allows; for a streaming ONNX export, :class:`~asr.inference.onnx_stream.OnnxStreamingModel`)
and a stream decoder (:mod:`asr.decoding.streaming`: greedy or beam search with the recognizer's LM and
lexicon); committed symbols become words when a space, a pause of
``word_pause`` or the end follows them, or an endpoint (a pause of ``endpoint`` seconds after speech,
which also ends a line). A word's times are those of the frames that emitted its first and last
characters, its confidence the mean posterior of its characters there. The final text is the text
the recognizer gives for the whole recording decoded in one call (in chunked mode, for recordings up
to one window, ``WindowConfig.window``), whatever the sizes of the pieces, when the recognizer's
``word_pause`` is on and at most ``endpoint`` (or both are off): offline, only ``word_pause`` splits
words at pauses.

:func:`step_streams` advances many streams at once, their models' work in one batch: what a server
does with its connections. Audio at another rate is resampled as it arrives (:class:`StreamResampler`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.audio import StreamResampler
from asr.decoding.beam import BeamDecoder
from asr.decoding.greedy import Hypothesis
from asr.decoding.streaming import BeamStream, GreedyStream, StreamDecoder
from asr.inference.alignment import Word
from asr.inference.onnx_stream import OnnxStreamingModel
from asr.model.streaming import StreamingModel
from asr.text import CharTokenizer

DEFAULT_ENDPOINT = 1.0  # seconds of pause after speech that end a line


@dataclass
class StreamUpdate:
    """What one call gave: new committed words, the tail after them, and where the stream stands."""

    words: list[Word] = field(default_factory=list)
    partial: str = ""
    endpoint: bool = False  # a pause after speech: the words so far make a line
    final: bool = False  # finished: every word is committed
    seconds: float = 0.0  # audio received, seconds


@dataclass
class _Token:
    id: int
    frame: int
    prob: float  # posterior of the symbol in its frame


class Stream:
    """One stream (see the module docstring); made by ``Recognizer.stream``."""

    def __init__(self, engine: StreamingModel | OnnxStreamingModel, decoder: StreamDecoder, tokenizer: CharTokenizer,
                 sample_rate: int, word_pause: float = 0.0, endpoint: float = DEFAULT_ENDPOINT) -> None:
        self.engine, self.decoder, self.tokenizer = engine, decoder, tokenizer
        self.state = engine.new_state()
        self.sample_rate = sample_rate
        self.resampler = StreamResampler(sample_rate, engine.sample_rate) if sample_rate != engine.sample_rate else None
        onnx = isinstance(engine, OnnxStreamingModel)
        self.frame_rate = engine.frame_rate if onnx else engine.model.output_frame_rate
        self.space = tokenizer.encode(" ")[0]
        self.pause_frames = round(word_pause * self.frame_rate)
        self.endpoint_frames = max(1, round(endpoint * self.frame_rate)) if endpoint > 0 else 0
        self.words: list[Word] = []  # every committed word
        self._lexicon = isinstance(decoder, BeamStream) and decoder.lexicon  # words come from the search
        self._lexicon_words: list[str] = []  # a lexicon search's words, waiting for their spellings' frames
        self._pending: list[_Token] = []  # symbols of the word being spelled
        self._log_probs = torch.zeros(0, len(tokenizer))  # final frames not yet given to committed symbols
        self._log_probs_start = 0
        self._frames = 0  # final frames so far
        self._last_speech = -1  # frame of the last non-space symbol
        self._endpointed = True  # no speech since the last endpoint
        self.finished = False

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    @property
    def seconds(self) -> float:
        return self.state.received / self.engine.sample_rate

    def feed(self, samples: torch.Tensor) -> None:
        """Add samples (1-D, at ``sample_rate``); nothing is computed until a step."""
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self.engine.accept(self.state, self.resampler(samples) if self.resampler else samples)

    def accept(self, samples: torch.Tensor) -> StreamUpdate:
        """Add samples and compute what they allow: this stream alone (a server batches with step_streams)."""
        self.feed(samples)
        return step_streams([self])[0]

    def close_input(self) -> None:
        """No more audio; nothing is computed until a step (which gives the last words)."""
        if self.resampler is not None and not self.state.finished:
            self.engine.accept(self.state, self.resampler.finish())
        self.engine.finish(self.state)

    def finish(self) -> StreamUpdate:
        """No more audio: the last words (``final`` is set)."""
        self.close_input()
        return step_streams([self])[0]

    # --- log-probs -> words (step_streams calls these) ---------------------------------------------

    def _advance(self, log_probs: torch.Tensor, lookahead: torch.Tensor) -> StreamUpdate:
        self._log_probs = torch.cat([self._log_probs, log_probs])
        self._frames += len(log_probs)
        step = self.decoder.step(log_probs, lookahead)
        update = StreamUpdate(self._take(step.committed))
        if self.state.done and not self.finished:
            update.words += self._take(self.decoder.finish().committed)
            update.words += self._close()
            self.finished = update.final = True
        elif not self._endpointed and self.endpoint_frames and not any(t != self.space for t in step.partial.tokens) \
                and self._frames - 1 - self._last_speech >= self.endpoint_frames:
            update.words += self._close()  # a long pause ends the word being spelled, and the line
            update.endpoint = self._endpointed = True
        update.partial = "" if self.finished else self.tokenizer.decode([t.id for t in self._pending] + step.partial.tokens)
        update.seconds = self.seconds
        self._forget_log_probs()
        return update

    def _take(self, hyp: Hypothesis) -> list[Word]:
        """Committed symbols -> the words they complete."""
        self._lexicon_words += hyp.words or []
        done = []
        for token, frame in zip(hyp.tokens, hyp.frames):
            if token == self.space:
                done += self._close()
                continue
            if self._pending and self.pause_frames and frame - self._pending[-1].frame >= self.pause_frames \
                    and not self._lexicon:
                done += self._close()
            row = frame - self._log_probs_start
            prob = float(self._log_probs[row, token].exp()) if 0 <= row < len(self._log_probs) else 1.0
            self._pending.append(_Token(token, frame, prob))
            self._last_speech = frame
            self._endpointed = False
        return done

    def _close(self) -> list[Word]:
        """The word being spelled, ended."""
        if not self._pending:
            return []
        tokens, self._pending = self._pending, []
        text = self._lexicon_words.pop(0) if self._lexicon_words else self.tokenizer.decode([t.id for t in tokens])
        end = min((tokens[-1].frame + 1) / self.frame_rate, self.seconds)
        word = Word(text, tokens[0].frame / self.frame_rate, end, sum(t.prob for t in tokens) / len(tokens))
        self.words.append(word)
        return [word]

    def _forget_log_probs(self) -> None:
        """Keep only the frames a symbol may still be committed from (beam search commits late)."""
        keep_from = self.decoder.done + 1 if isinstance(self.decoder, BeamStream) else self._frames
        drop = keep_from - self._log_probs_start
        if drop > 0:
            self._log_probs = self._log_probs[drop:]
            self._log_probs_start = keep_from


def step_streams(streams: list[Stream]) -> list[StreamUpdate]:
    """Advance every stream as far as its audio allows: one model batch per engine, then each decoder."""
    updates: list[StreamUpdate | None] = [None] * len(streams)
    by_engine: dict[int, list[int]] = {}
    for i, stream in enumerate(streams):
        by_engine.setdefault(id(stream.engine), []).append(i)
    for members in by_engine.values():
        engine = streams[members[0]].engine
        outputs = engine.step([streams[i].state for i in members])
        for i, out in zip(members, outputs):
            updates[i] = streams[i]._advance(out.log_probs, out.lookahead)
    return updates  # type: ignore[return-value]


def stream_decoder(decoder: object, blank: int) -> StreamDecoder:
    """The stream decoder of a recognizer's decoder: beam search for a BeamDecoder, else greedy."""
    return BeamStream(decoder) if isinstance(decoder, BeamDecoder) else GreedyStream(blank)
