"""The model side of streaming: the latency-controlled BiLSTM, global feature statistics, and a
stream's log-probs equal to the whole recording's in chunked mode for any piece sizes."""

from __future__ import annotations


import pytest
import torch

from asr.model import AcousticModel, FeatureConfig, ModelConfig
from asr.model.chunked import chunked_forward, run_windows, to_windows
from asr.model.lstm import SplitBiLSTM
from asr.model.streaming import StreamingModel
from asr.training.train import train
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides
from tests.streams import stream_in_pieces

RATE = 16_000


def test_one_chunk_over_the_whole_sequence_is_the_bidirectional_stack():
    torch.manual_seed(0)
    stack = SplitBiLSTM(8, 16, 3).eval()
    x, lengths = torch.randn(3, 50, 8), torch.tensor([50, 37, 12])
    with torch.no_grad():
        assert torch.allclose(chunked_forward(stack, x, lengths, 50, 0), stack(x, lengths), atol=1e-6)
        chunked = chunked_forward(stack, x, lengths, 10, 5)
        assert not torch.allclose(chunked, stack(x, lengths), atol=1e-3)  # 10 + 5 frames cannot see it all
        alone = chunked_forward(stack, x[1:2, :37], lengths[1:2], 10, 5)
    assert torch.allclose(chunked[1:2, :37], alone, atol=1e-6) and chunked[1, 37:].abs().max() == 0  # padding-blind


def test_a_window_at_a_time_with_carried_states_is_the_whole_sequence_chunked():
    torch.manual_seed(1)
    stack = SplitBiLSTM(8, 16, 2).eval()
    x, lengths = torch.randn(1, 43, 8), torch.tensor([43])
    windows, valid = to_windows(x, lengths, 10, 4)
    state, parts = None, []
    with torch.no_grad():
        whole = chunked_forward(stack, x, lengths, 10, 4)
        for k in range(windows.shape[1]):
            out, state = run_windows(stack, windows[:, k : k + 1], valid[:, k : k + 1], 10, state)
            parts.append(out[:, 0, :10])
    assert torch.allclose(torch.cat(parts, 1)[:, :43], whole, atol=1e-6)


@pytest.mark.parametrize("normalize", ["global", "none"])
def test_a_stream_in_pieces_of_any_size_gives_the_recordings_chunked_log_probs(normalize):
    torch.manual_seed(2)
    model = AcousticModel(29, FeatureConfig(n_mels=40, normalize=normalize),
                          ModelConfig(rnn_layers=2, hidden_size=32, chunk=0.3, right_context=0.2)).eval()
    if normalize == "global":
        model.features.set_global_stats(torch.full((40,), -500.0), torch.full((40,), 3000.0), 100)
    audio = [torch.randn(n) * 0.1 for n in (3 * RATE + 77, 1234, RATE // 2, 2 * RATE)]
    streams = stream_in_pieces(StreamingModel(model), audio, seed=3)
    for x, got in zip(audio, streams):
        with torch.no_grad():
            whole, frames = model(x[None], torch.tensor([x.numel()]))
        assert got.shape == whole[0].shape and len(got) == int(frames)
        assert torch.allclose(got, whole[0], atol=1e-4)


def test_a_model_trained_on_whole_utterances_streams_at_a_given_latency():
    model = AcousticModel(29, FeatureConfig(n_mels=40), ModelConfig(rnn_layers=1, hidden_size=16)).eval()
    with pytest.raises(ValueError, match="reads whole utterances.*chunk=0.4"):
        StreamingModel(model)
    streaming = StreamingModel(model, chunk=0.4, right_context=0.4)
    assert streaming.model.chunk_frames == 13 and streaming.model.right_frames == 13
    assert model.chunk_frames == 0  # the model given is left reading whole utterances
    assert 0.8 < streaming.latency < 0.9  # 26 output frames of 30 ms, and the front end's look-ahead
    x = torch.randn(RATE) * 0.1
    (got,) = stream_in_pieces(streaming, [x], seed=4)  # utterance normalization: a running estimate, not the same numbers
    assert got.shape == model(x[None], torch.tensor([RATE]))[0][0].shape


def test_global_statistics_are_measured_before_training_and_kept_in_the_checkpoint(chirp_manifests, tmp_path):
    cfg = compose_config(*manifest_overrides(chirp_manifests), *TINY_MODEL, "features.normalize=global",
                         "features.global_stats_utterances=5", "model.chunk=0.2", "model.right_context=0.1",
                         "logger=none", "trainer.max_steps=2", "trainer.enable_progress_bar=false", "test=false",
                         "data.batch_seconds=4.5")
    train(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert int(state["model.features.global_frames"]) > 100  # 5 chirps of about 1 s: 100 frames each
    assert state["model.features.global_mean"].abs().sum() > 0 and (state["model.features.global_scale"] != 1).all()
