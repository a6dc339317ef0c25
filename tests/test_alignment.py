"""Word timestamps from CTC log-probs whose word boundaries are known, across decode segments."""

import pytest
import torch

from asr.decoding.options import DecodeOptions
from asr.inference.alignment import align_words
from asr.inference.recognizer import Emission, Recognizer
from asr.inference.windows import WindowConfig
from asr.model.acoustic import AcousticModel, ConvLayer, ModelConfig
from asr.text import CharTokenizer

TOK = CharTokenizer()
FRAME_RATE = 25.0  # output frames per second of the default model (10 ms hop x 4)
TOLERANCE = 1 / FRAME_RATE  # stated accuracy: one output frame (40 ms)
SPIKE = 0.8  # posterior of the character in its frame (the rest is spread over the other symbols)


def recording(sentences: list[str], word_frames: int = 12, gap_frames: int = 4,
              pause_frames: int = 20) -> tuple[torch.Tensor, list[tuple[str, float, float]]]:
    """Log-probs of ``sentences`` read one after another, and each word's true (start, end) seconds.

    Each word lasts ``word_frames``; its characters fire as CTC spikes spread over that span, the
    first in its first frame and the last in its last (a one-letter word is one frame); words are ``gap_frames`` apart with a space
    spike in the gap, sentences ``pause_frames`` apart with none (as a model trained on single
    sentences does)."""
    labels: list[int | None] = []  # symbol per frame; None = blank
    truth = []
    for sentence in sentences:
        for i, word in enumerate(sentence.split()):
            if i:
                gap = [None] * gap_frames
                gap[gap_frames // 2] = TOK.encode(" ")[0]
                labels += gap
            start = len(labels)
            span = [None] * word_frames
            for k, ch in enumerate(word):
                span[round(k * (word_frames - 1) / max(1, len(word) - 1))] = TOK.encode(ch)[0]
            labels += span
            last = start + (word_frames if len(word) > 1 else 1)  # after the word's last spike
            truth.append((word, start / FRAME_RATE, last / FRAME_RATE))
        labels += [None] * pause_frames
    rest = torch.tensor((1 - SPIKE) / (len(TOK) - 1)).log()
    x = torch.full((len(labels), len(TOK)), float(rest))
    for t, label in enumerate(labels):
        x[t, TOK.blank if label is None else label] = torch.tensor(SPIKE).log()
    return x, truth


SENTENCES = ["the cat sat on the mat", "a dog ran home", "where did you put my keys",
             "the children don't like cold soup"]


def test_words_start_and_end_within_a_frame_of_the_truth():
    log_probs, truth = recording(SENTENCES)
    words = align_words(log_probs, " ".join(SENTENCES), TOK, FRAME_RATE, offset=0.0)
    assert [w.word for w in words] == [t[0] for t in truth]
    for w, (_, start, end) in zip(words, truth):
        assert abs(w.start - start) <= TOLERANCE and abs(w.end - end) <= TOLERANCE
        assert w.confidence == pytest.approx(SPIKE, abs=1e-4)


def test_offset_shifts_every_time():
    log_probs, truth = recording(SENTENCES[:1])
    words = align_words(log_probs, SENTENCES[0], TOK, FRAME_RATE, offset=100.0)
    assert words[0].start == pytest.approx(100.0 + truth[0][1])


def test_text_longer_than_its_frames_is_spread_not_crashed():
    log_probs = torch.zeros(3, len(TOK)).log_softmax(-1)
    words = align_words(log_probs, "hello world", TOK, FRAME_RATE)
    assert [w.word for w in words] == ["hello", "world"] and words[-1].end == pytest.approx(3 / FRAME_RATE)
    assert align_words(log_probs, "", TOK, FRAME_RATE) == []


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_timestamps_of_a_long_recording_decoded_in_segments(decoder):
    """Sentences concatenated into ~110 s, decoded in 10-second segments cut at pauses: every word
    is there once, at its true time (the sentences have no space between them: ``word_pause`` ends
    their last words)."""
    sentences = SENTENCES * 8
    log_probs, truth = recording(sentences)
    tiny = ModelConfig(conv=[ConvLayer(2, (3, 3), (2, 2)), ConvLayer(2, (3, 3), (2, 2))], rnn_layers=1, hidden_size=4)
    recognizer = Recognizer(AcousticModel(len(TOK), model=tiny), TOK, "cpu", options=DecodeOptions(decoder, word_pause=0.5),
                            windows=WindowConfig(segment=10.0))
    assert recognizer.frame_rate == FRAME_RATE
    transcript = recognizer.decode(Emission("x.wav", log_probs, len(log_probs) / FRAME_RATE), words=True)
    assert transcript.text == " ".join(sentences)
    assert len(transcript.words) == len(truth)
    for w, (word, start, end) in zip(transcript.words, truth):
        assert w.word == word and abs(w.start - start) <= TOLERANCE and abs(w.end - end) <= TOLERANCE


def test_viterbi_path_is_a_best_ctc_path():
    """Same score as torchaudio's forced_align where no predecessor states tie, and a valid path."""
    import numpy as np
    import torchaudio.functional as AF

    from asr.inference.alignment import ctc_viterbi

    gen = torch.Generator().manual_seed(0)
    for frames, targets in ((30, [3, 3, 5, 1]), (12, [7]), (40, [2, 4, 2, 4, 9, 9, 9]), (7, [1, 2, 3, 4])):
        log_probs = torch.randn(frames, 10, generator=gen).log_softmax(-1)
        path = ctc_viterbi(log_probs.numpy(), targets, 0)
        labels = np.where(path >= 0, np.array(targets)[np.maximum(path, 0)], 0)
        mine = float(log_probs[torch.arange(frames), torch.from_numpy(labels)].sum())
        _, scores = AF.forced_align(log_probs[None], torch.tensor([targets], dtype=torch.int32), blank=0)
        assert mine == pytest.approx(float(scores.sum()), abs=1e-4)
        emitted = [int(k) for i, k in enumerate(path) if k >= 0 and (i == 0 or path[i - 1] != k)]
        assert emitted == list(range(len(targets)))
