"""Streaming transcription (asr.inference.stream, asr.decoding.streaming, asr.audio.StreamResampler):
a stream fed in pieces of any size ends with the text of the whole recording decoded in one call."""

from __future__ import annotations

import random

import pytest
import torch

from asr.audio import StreamResampler, resample
from asr.decoding.beam import BeamDecoder
from asr.decoding.ngram import build_arpa
from asr.decoding.options import DecodeOptions
from asr.decoding.streaming import BeamStream
from asr.inference.recognizer import Recognizer
from asr.inference.stream import step_streams
from asr.model import AcousticModel
from asr.text import CharTokenizer
from tests.streams import babbling_model, tone_tensor

RATE = 16_000
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the cat ran home", "she sat on a chair"] * 5


@pytest.fixture(scope="module")
def model() -> AcousticModel:
    """Random weights that emit many symbols and blanks (a trained model is not needed to compare two
    decodings of the same log-probs), chunked, globally normalized."""
    return babbling_model(64)


def _feed(stream, audio: torch.Tensor, seed: int, max_piece: int = 8000) -> list:
    rng, position, updates = random.Random(seed), 0, []
    while position < audio.numel():
        piece = rng.choice([1, rng.randint(2, 500), rng.randint(500, max_piece)])
        updates.append(stream.accept(audio[position : position + piece]))
        position += piece
    updates.append(stream.finish())
    return updates


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
@pytest.mark.parametrize("word_pause,endpoint", [(0.0, 0.0), (0.3, 1.0)])
def test_a_stream_in_pieces_of_any_size_ends_with_the_recordings_text(model, decoder, word_pause, endpoint):
    options = DecodeOptions(decoder=decoder, beam_size=8, word_pause=word_pause)
    recognizer = Recognizer(model, CharTokenizer(), device="cpu", options=options)
    for seed, seconds in enumerate((4.0, 0.3, 9.5)):
        audio = tone_tensor(seconds, seed)
        expected = recognizer.transcribe_waveforms([audio])[0]
        stream = recognizer.stream(endpoint=endpoint)
        updates = _feed(stream, audio, seed)
        assert stream.text == expected and (seconds < 1 or len(expected.split()) > 2)
        assert [w.word for u in updates for w in u.words] == expected.split()
        assert updates[-1].final and not any(u.final for u in updates[:-1])
        if seconds > 4:
            assert any(u.words for u in updates[:-1]), "words are committed before the end"
        times = [t for u in updates for w in u.words for t in (w.start, w.end)]
        assert times == sorted(times) and (not times or times[-1] <= seconds)


def test_audio_at_another_rate_is_resampled_as_it_arrives(model):
    recognizer = Recognizer(model, CharTokenizer(), device="cpu", options=DecodeOptions())
    audio = resample(tone_tensor(3.0, 7), RATE, 44_100)
    stream = recognizer.stream(sample_rate=44_100, endpoint=0)
    _feed(stream, audio, seed=5, max_piece=20_000)
    assert stream.text == recognizer.transcribe_waveforms([resample(audio, 44_100, RATE)])[0]


@pytest.mark.parametrize("rates", [(48_000, 16_000), (44_100, 16_000), (8_000, 16_000)])
def test_stream_resampling_gives_the_whole_recordings_samples(rates):
    torch.manual_seed(3)
    audio = torch.randn(rates[0] * 2 + 123)
    resampler, rng, out, position = StreamResampler(*rates), random.Random(0), [], 0
    while position < audio.numel():
        piece = rng.randint(1, 5000)
        out.append(resampler(audio[position : position + piece]))
        position += piece
    out.append(resampler.finish())
    assert torch.allclose(torch.cat(out), resample(audio, *rates), atol=1e-5)


def test_many_streams_stepped_together_give_what_each_gives_alone(model):
    recognizer = Recognizer(model, CharTokenizer(), device="cpu", options=DecodeOptions())
    audio = [tone_tensor(s, i) for i, s in enumerate((2.5, 1.0, 4.2))]
    alone = [recognizer.transcribe_waveforms([a])[0] for a in audio]
    streams = [recognizer.stream(endpoint=0) for _ in audio]
    position, rng = [0] * len(audio), random.Random(6)
    while not all(s.finished for s in streams):
        for i, (stream, a) in enumerate(zip(streams, audio)):
            if position[i] < a.numel():
                piece = rng.randint(100, 3000)
                stream.feed(a[position[i] : position[i] + piece])
                position[i] += piece
            elif not stream.state.finished:
                stream.engine.finish(stream.state)
        step_streams(streams)
    assert [s.text for s in streams] == alone


def _emissions(text: str, rng: random.Random) -> torch.Tensor:
    """Log-probs that spell ``text`` through noise: each character for 1-2 frames, blanks between."""
    tokenizer, frames = CharTokenizer(), []
    for ch in text:
        for _ in range(rng.randint(1, 2)):
            frames.append(torch.randn(len(tokenizer)) * 1.5)
            frames[-1][tokenizer.encode(ch)[0]] += 3.0
        for _ in range(rng.randint(0, 2)):
            frames.append(torch.randn(len(tokenizer)) * 1.5)
            frames[-1][0] += 4.0
    return torch.stack(frames).log_softmax(-1)


@pytest.mark.parametrize("unit", ["char", "word"])
def test_beam_search_with_an_lm_commits_early_and_ends_as_the_search_in_one_call(unit, tmp_path):
    """A char LM (lexicon-free search) and a word LM (lexicon search): the stream's committed
    tokens, frames and words equal the offline decoder's, in pieces of any size."""
    lm = tmp_path / f"{unit}.arpa"
    build_arpa(SENTENCES, lm, order=3, unit=unit)
    decoder = BeamDecoder(CharTokenizer(), DecodeOptions(decoder="beam", beam_size=16, lm=str(lm), lm_weight=1.0,
                                                         word_score=0.5))
    torch.manual_seed(5)
    committed_early = 0
    for seed in range(3):
        rng = random.Random(seed)
        log_probs = _emissions(" ".join(rng.sample(SENTENCES, 3)), rng)
        whole = decoder(log_probs[None], torch.tensor([len(log_probs)]))[0]
        stream, tokens, frames, words, position, early = BeamStream(decoder), [], [], [], 0, 0
        while position < len(log_probs):
            piece = rng.randint(1, 30)
            step = stream.step(log_probs[position : position + piece])
            position += piece
            tokens, frames, words = tokens + step.committed.tokens, frames + step.committed.frames, \
                words + (step.committed.words or [])
        early = len(tokens)
        step = stream.finish()
        tokens, frames, words = tokens + step.committed.tokens, frames + step.committed.frames, \
            words + (step.committed.words or [])
        assert (tokens, frames, words) == (whole.tokens, whole.frames, whole.words or [])
        committed_early += early
    assert committed_early > 0, "the beam's agreed prefix is committed before the end"


def test_a_beam_that_does_not_agree_commits_its_best_path_after_max_pending_frames():
    decoder = BeamDecoder(CharTokenizer(), DecodeOptions(decoder="beam", beam_size=16))
    rng = random.Random(9)
    log_probs = _emissions(" ".join(rng.sample(SENTENCES, 6)), rng)
    stream = BeamStream(decoder, max_pending=40)
    for position in range(0, len(log_probs), 7):
        stream.step(log_probs[position : position + 7])
        assert stream.total - 1 - stream.done <= 40
