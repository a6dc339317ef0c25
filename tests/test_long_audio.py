"""Long recordings: they are cut at pauses and each piece is read alone; windows tile the file's
frames exactly, seams lose and double nothing, the model never sees more than one window, and short
or silent audio gives an empty transcript.

Ramp files (a sample holds its own position) test the windowing alone, with pause cuts off
(``pause=0``): a ramp has no pauses, only a quiet start."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.inference.recognizer import Recognizer
from asr.inference.windows import (
    WindowConfig,
    merge_frames,
    pause_cuts,
    plan_windows,
    segment_bounds,
    stream_frames,
    stream_log_probs,
    stream_segments,
)
from asr.model.acoustic import AcousticModel, ConvLayer, ModelConfig
from asr.text import CharTokenizer

TOK = CharTokenizer()
RATE = 16_000
SPF = 640  # samples per output frame of the default front end (10 ms hop x 4)
TIME_SCALE = 2 ** 23  # sample n of a ramp file holds n / 2**23: exact in float32 for n < 2**23
TINY = ModelConfig(conv=[ConvLayer(2, (3, 3), (2, 2)), ConvLayer(2, (3, 3), (2, 2))], rnn_layers=1, hidden_size=4)


class TimeModel:
    """A stand-in acoustic model for ramp files: it reads where its input starts in the file and
    outputs, for each frame, the file frame number (as the best symbol, cycling through the
    alphabet) or the symbols of ``labels`` at that frame; the blank's log-prob is minus 1 minus the
    frame's distance to the nearer edge of the window (so a merged stream shows what context each
    kept frame had)."""

    samples_per_frame, vocab_size = SPF, len(TOK)

    def __init__(self, labels: list[int] | None = None) -> None:
        self.labels = labels
        self.calls: list[list[int]] = []  # input lengths of each call

    def output_frames(self, n_samples: int) -> int:
        return n_samples // SPF + 1  # what the real front end gives (hop 160, two stride-2 convolutions)

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(lengths.tolist())
        frames = [self.output_frames(int(n)) for n in lengths]
        out = torch.full((len(frames), max(frames), self.vocab_size), -30.0)
        for b, n in enumerate(frames):
            first = round(float(waves[b, 0]) * TIME_SCALE) // SPF
            for k in range(n):
                label = self.labels[first + k] if self.labels else 1 + (first + k) % (self.vocab_size - 1)
                out[b, k, label] = 0.0
                if label != 0:
                    out[b, k, 0] = -1.0 - min(k, n - 1 - k)
        return out, torch.tensor(frames)


def ramp_file(path, n_samples: int):
    sf.write(path, (np.arange(n_samples) / TIME_SCALE).astype(np.float32), RATE, subtype="FLOAT")
    return path


@pytest.mark.parametrize("n_samples", [1, 639, 640, 10 * RATE, 61 * RATE + 123, 3600 * RATE + 7])
@pytest.mark.parametrize("chunk, context", [(50, 10), (7, 0), (500, 100)])
def test_kept_spans_tile_the_frames_and_windows_stay_small(n_samples, chunk, context):
    total = n_samples // SPF + 1
    windows = plan_windows(n_samples, SPF, total, chunk, context)
    kept = [f for w in windows for f in range(w.keep_start, w.keep_end)]
    assert kept == list(range(total)), "every frame kept once, in order"
    for w in windows:
        assert w.start == w.first_frame * SPF and w.end <= n_samples
        assert w.end - w.start <= (chunk + 2 * context + 1) * SPF
        assert w.keep_start - w.first_frame >= min(context, w.keep_start), "left context kept"
        assert (w.end // SPF) - w.keep_end >= min(context, total - w.keep_end) - 1, "right context kept"


def test_merged_stream_is_the_file_frame_by_frame_with_context_at_every_seam(tmp_path):
    n_samples = 95 * RATE + 123
    path = ramp_file(tmp_path / "ramp.wav", n_samples)
    model = TimeModel()
    config = WindowConfig(chunk=4.0, context=1.0, pause=0)  # 100 kept frames, 25 frames of context per side
    log_probs = stream_log_probs(path, model, RATE, n_samples, config, batch_windows=3)
    total = n_samples // SPF + 1
    assert log_probs.shape == (total, len(TOK))
    symbols = log_probs[:, 1:].argmax(-1) + 1
    assert symbols.tolist() == [1 + f % (len(TOK) - 1) for f in range(total)], "no frame lost, doubled or moved"
    margins = (-log_probs[:, 0] - 1).long()
    for f in range(total):
        assert margins[f] >= min(25, f, total - 1 - f), f"frame {f} kept with too little context"
    # The model saw ceil(total / 100) windows, three per call, none longer than chunk + 2 x context.
    windows = [n for call in model.calls for n in call]
    assert len(windows) == math.ceil(total / 100) and max(len(c) for c in model.calls) == 3
    assert max(windows) <= 6 * RATE + SPF


def _recognizer(**windows) -> Recognizer:
    return Recognizer(AcousticModel(len(TOK), model=TINY), TOK, "cpu", windows=WindowConfig(**windows))


def test_words_cut_by_window_seams_are_decoded_once(tmp_path):
    """Words placed so that most seams fall inside one: the transcript is exactly the text."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 12
    labels: list[int] = [0] * 7
    for word in words:
        for ch in word:
            labels += [TOK.encode(ch)[0], 0, 0]
        labels += [0, TOK.encode(" ")[0], 0, 0]
    n_samples = (len(labels) + 40) * SPF
    labels += [0] * 41
    path = ramp_file(tmp_path / "words.wav", n_samples)
    recognizer = _recognizer(chunk=2.0, context=0.5, segment=7.0, pause=0)
    recognizer.runner = TimeModel(labels)
    transcript = recognizer.transcribe(path, words=True)
    assert transcript.text == " ".join(words)
    assert [w.word for w in transcript.words] == words
    assert all(a.end <= b.start for a, b in zip(transcript.words, transcript.words[1:])), "times increase"
    # Decoded segment by segment as the windows are done (memory flat): what the whole log-probs give.
    (emission,) = recognizer.emissions([path])
    assert recognizer.decode(emission, words=True) == transcript


@pytest.mark.parametrize("seed", range(4))
def test_segments_cut_from_chunks_as_they_come_are_those_of_the_whole(seed):
    """stream_segments over chunks of any sizes gives segment_bounds' cuts of their concatenation, the
    same frames in each, holding at most a segment and a chunk."""
    g = torch.Generator().manual_seed(seed)
    total, max_frames, blank, space = 3000, 200, 0, TOK.encode(" ")[0]
    symbols = torch.randint(1, len(TOK), (total,), generator=g)
    symbols[torch.rand(total, generator=g) < 0.6] = blank  # runs of blanks and spaces: pauses to cut in
    symbols[torch.rand(total, generator=g) < 0.05] = space
    log_probs = torch.nn.functional.one_hot(symbols, len(TOK)).float().log_softmax(-1)
    chunks, first = [], 0
    while first < total:
        size = int(torch.randint(1, 400, (1,), generator=g))
        chunks.append((first, log_probs[first : first + size]))
        first += size
    got = list(stream_segments(iter(chunks), max_frames, blank, space))
    expected = segment_bounds(log_probs, max_frames, blank, space)
    assert [(start, start + piece.shape[0]) for start, piece in got] == expected
    assert all(torch.equal(piece, log_probs[start : start + piece.shape[0]]) for start, piece in got)


def test_a_long_file_streams_its_log_probs_in_window_sized_chunks(tmp_path):
    """stream_frames tiles the file's frames in order, in chunks of at most one window's kept part;
    merged, they are stream_log_probs' tensor."""
    n_samples = 70 * RATE + 321
    path = ramp_file(tmp_path / "ramp.wav", n_samples)
    config = WindowConfig(chunk=5.0, context=1.0, pause=0)
    chunks = list(stream_frames(path, TimeModel(), RATE, n_samples, config))
    starts = [first for first, _ in chunks]
    ends = [first + lp.shape[0] for first, lp in chunks]
    assert starts[0] == 0 and starts[1:] == ends[:-1] and ends[-1] == n_samples // SPF + 1
    assert max(lp.shape[0] for _, lp in chunks) <= round(5.0 * RATE / SPF)
    total = n_samples // SPF + 1
    assert torch.equal(merge_frames(chunks, total, len(TOK)),
                       stream_log_probs(path, TimeModel(), RATE, n_samples, config))


class Spy:
    """A model runner that records the shape of every batch it is given."""

    def __init__(self, runner) -> None:
        self.runner, self.shapes = runner, []
        self.samples_per_frame, self.vocab_size = runner.samples_per_frame, runner.vocab_size
        self.output_frames = runner.output_frames

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor):
        self.shapes.append(tuple(waves.shape))
        return self.runner(waves, lengths)


def test_a_long_file_goes_through_the_real_model_one_window_at_a_time(tmp_path):
    sf.write(tmp_path / "noise.flac", 0.1 * np.random.default_rng(0).standard_normal(60 * RATE), RATE)
    recognizer = _recognizer(chunk=5.0, context=1.0)
    recognizer.runner = spy = Spy(recognizer.runner)
    transcript = recognizer.transcribe(tmp_path / "noise.flac", batch_seconds=7.0)
    frames = 60 * RATE // SPF + 1
    assert len(spy.shapes) == math.ceil(frames / 125), "one 7-second window per call, 5 s kept of each"
    assert max(batch for batch, _ in spy.shapes) == 1 and max(n for _, n in spy.shapes) <= 7 * RATE
    assert transcript.duration == pytest.approx(60.0)


def test_audio_shorter_than_a_frame_and_silence_give_empty_transcripts(tmp_path):
    sf.write(tmp_path / "click.wav", 0.5 * np.ones(100), RATE)  # 6 ms: less than one 40 ms output frame
    sf.write(tmp_path / "silence.wav", np.zeros(3 * RATE), RATE)
    sf.write(tmp_path / "long_silence.flac", np.zeros(70 * RATE), RATE)
    recognizer = _recognizer()
    model = TimeModel()
    recognizer.runner = model
    out = recognizer.transcribe([tmp_path / "click.wav", tmp_path / "silence.wav", tmp_path / "long_silence.flac"],
                                words=True)
    assert [(t.text, t.words) for t in out] == [("", [])] * 3
    assert model.calls == [], "silence never reaches the model"


def test_pause_cuts_fall_in_the_middle_of_long_enough_quiet_runs_between_sounds():
    quiet = [True] * 5 + [False] * 10 + [True] * 8 + [False] * 3 + [True] * 3 + [False] * 4 + [True] * 20
    assert pause_cuts(quiet, 8) == [19], "runs at either end, or shorter than 8 frames, are not cut"
    assert pause_cuts(quiet, 3) == [19, 27]


class ConstantModel:
    """Outputs the symbol 2 ("a") on every frame."""

    samples_per_frame, vocab_size = SPF, len(TOK)

    def output_frames(self, n_samples: int) -> int:
        return n_samples // SPF + 1

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = [self.output_frames(int(n)) for n in lengths]
        out = torch.full((len(frames), max(frames), self.vocab_size), -30.0)
        out[:, :, 2] = 0.0
        return out, torch.tensor(frames)


def test_a_long_recording_is_cut_at_its_pauses_and_each_piece_read_alone(tmp_path):
    rng = np.random.default_rng(0)
    wave = 1e-3 * rng.standard_normal(41 * RATE)  # noise floor at -60 dBFS
    sounds = [(2.0, 5.0), (5.6, 9.0), (9.3, 40.0)]  # seconds; pauses of 0.6 s and 0.3 s between them
    for a, b in sounds:
        t = np.arange(int((b - a) * RATE)) / RATE
        wave[int(a * RATE) : int(a * RATE) + t.size] += 0.3 * np.sin(2 * np.pi * 440 * t)
    wave[int(5.1 * RATE) : int(5.5 * RATE)] = 0.0  # digital silence inside the first pause
    path = tmp_path / "talk.flac"
    sf.write(path, wave, RATE, subtype="PCM_24")
    windows = []
    config = WindowConfig(chunk=20.0, context=4.0, pause=0.25)
    space = TOK.encode(" ")[0]
    log_probs = stream_log_probs(path, ConstantModel(), RATE, wave.size, config, on_window=windows.append,
                                 boundary=space)
    frame = lambda seconds: int(seconds * RATE / SPF)  # noqa: E731
    for gap_middle in (5.3, 9.15):
        assert not any(w.start < gap_middle * RATE < w.end for w in windows), "no window reads across a pause"
    assert min(w.start for w in windows) >= (2.0 - 0.1) * RATE - SPF, "the quiet start is not read"
    assert not any(w.start < 5.5 * RATE - SPF and w.end > 5.1 * RATE for w in windows), "nor digital silence"
    long_piece = [w for w in windows if w.start >= 9.0 * RATE]
    assert len(long_piece) == 2 and max(w.end - w.start for w in windows) <= 28 * RATE + SPF, \
        "a piece longer than a window is windowed"
    best = log_probs.argmax(-1)
    assert best.shape[0] == wave.size // SPF + 1
    assert best[frame(1.0)] == 0 and best[frame(5.2)] == 0 and best[frame(40.6)] == 0, "pauses are blank"
    assert (best == space).sum() == 2, "one word boundary at each cut"
    for a, b in sounds:
        assert (best[frame(a) + 1 : frame(b) - 1] == 2).all(), "every frame of sound comes from the model"
