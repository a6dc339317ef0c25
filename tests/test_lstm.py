import pytest
import torch

from asr.model.acoustic import AcousticModel, ModelConfig
from asr.model.lstm import (
    PackedBiLSTM,
    SplitBiLSTM,
    build_rnn,
    convert_rnn_state_dict,
    pad_batch,
    reverse_index,
    training_flops_per_frame,
)

INPUT, HIDDEN, LAYERS = 12, 16, 3
LENGTHS = [9, 4, 7, 1]


def _batch(lengths=LENGTHS, features=INPUT, seed=0, pad_value=0.0):
    """Padded (batch, frames, features) with ``pad_value`` on the padding, and the lengths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), max(lengths), features), pad_value)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, features, generator=g)
    return x, torch.tensor(lengths)


def _pair(dropout=0.0):
    torch.manual_seed(0)
    packed = PackedBiLSTM(INPUT, HIDDEN, LAYERS, dropout)
    split = SplitBiLSTM(INPUT, HIDDEN, LAYERS, dropout)
    split.load_state_dict(packed.state_dict())  # the packed names are converted on load
    return packed, split


def test_split_equals_nn_lstm_run_on_each_sequence_alone():
    packed, split = _pair()
    x, lengths = _batch()
    with torch.no_grad():
        out = split(x, lengths)
        for i, n in enumerate(LENGTHS):
            alone, _ = packed.lstm(x[i : i + 1, :n])  # plain nn.LSTM(bidirectional, num_layers=3), no padding
            torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert out.shape == (len(LENGTHS), max(LENGTHS), 2 * HIDDEN)


def test_split_equals_packed_outputs_and_gradients():
    packed, split = _pair()
    x, lengths = _batch()
    weights = torch.randn(len(LENGTHS), max(LENGTHS), 2 * HIDDEN)
    grads = []
    for rnn in (packed, split):
        xi = x.clone().requires_grad_()
        out = rnn(xi, lengths)
        (out * weights).sum().backward()
        grads.append((out.detach(), xi.grad, [p.grad for p in rnn.parameters()]))
    (out_p, dx_p, dw_p), (out_s, dx_s, dw_s) = grads
    torch.testing.assert_close(out_s, out_p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx_s, dx_p, atol=1e-5, rtol=1e-5)
    assert len(dw_s) == len(dw_p) == 8 * LAYERS
    for gs, gp in zip(dw_s, dw_p):  # same parameter order, so optimizer states carry over too
        torch.testing.assert_close(gs, gp, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", ["packed", "split"])
def test_padding_never_reaches_valid_outputs(impl):
    _, split = _pair()
    rnn = build_rnn(impl, INPUT, HIDDEN, LAYERS)
    rnn.load_state_dict(split.state_dict())
    x, lengths = _batch()
    longer = max(LENGTHS) + 5  # a longer utterance in the batch, and garbage on every padded frame
    noisy = torch.full((len(LENGTHS) + 1, longer, INPUT), 7.0)
    noisy[-1] = torch.randn(longer, INPUT)
    for i, n in enumerate(LENGTHS):
        noisy[i, :n] = x[i, :n]
    with torch.no_grad():
        clean_out = rnn(x, lengths)
        noisy_out = rnn(noisy, torch.tensor(LENGTHS + [max(LENGTHS) + 5]))
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(noisy_out[i, :n], clean_out[i, :n], atol=1e-5, rtol=1e-5)
        assert noisy_out[i, n:].abs().sum() == 0, "padded frames come out as zeros"


def test_batches_padded_for_cudnn_give_the_same_outputs():
    """On CUDA the split stack pads the batch to a multiple of 8 with empty sequences."""
    _, split = _pair()
    x, lengths = _batch()
    padded, padded_lengths = pad_batch(x, lengths)
    assert padded.shape[0] == 8 and padded_lengths.tolist() == LENGTHS + [0] * 4
    assert pad_batch(x, lengths, multiple=8, limit=6)[0] is x  # beyond the limit: left alone
    with torch.no_grad():
        out = split(padded, padded_lengths)
        torch.testing.assert_close(out[: len(LENGTHS)], split(x, lengths))
    assert out[len(LENGTHS) :].abs().sum() == 0


def test_reverse_index_reverses_each_sequence_within_its_length():
    index = reverse_index(torch.tensor([3, 1, 0]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [0, 1, 2, 3]]


def test_dropout_acts_between_layers_in_training_only():
    packed, split = _pair(dropout=0.5)
    x, lengths = _batch()
    with torch.no_grad():
        torch.testing.assert_close(split.eval()(x, lengths), packed.eval()(x, lengths), atol=1e-5, rtol=1e-5)
        torch.manual_seed(1)
        a = split.train()(x, lengths)
        torch.manual_seed(2)
        b = split(x, lengths)
    assert not torch.allclose(a, b)
    for i, n in enumerate(LENGTHS):
        assert a[i, n:].abs().sum() == 0


def test_state_dict_conversion_round_trip():
    packed, split = _pair()
    state = packed.state_dict()
    as_split = convert_rnn_state_dict(state, "split")
    assert set(as_split) == set(split.state_dict())
    assert "layers.2.bwd.weight_hh_l0" in as_split and "lstm.weight_hh_l2_reverse" in state
    back = convert_rnn_state_dict(as_split, "packed")
    assert list(back) == list(state)
    assert all(back[k] is state[k] for k in state)
    assert convert_rnn_state_dict(as_split, "split") == as_split  # already there: unchanged
    prefixed = convert_rnn_state_dict({"model.rnn.lstm.bias_ih_l0": 1, "model.head.weight": 2}, "split", "model.rnn.")
    assert prefixed == {"model.rnn.layers.0.fwd.bias_ih_l0": 1, "model.head.weight": 2}
    for (name_p, p), (name_s, s) in zip(packed.named_parameters(), split.named_parameters()):
        assert p.shape == s.shape and convert_rnn_state_dict({name_p: 0}, "split") == {name_s: 0}


def test_build_rnn_names_the_bad_option():
    assert isinstance(build_rnn("auto", 4, 8, 1), SplitBiLSTM)
    assert isinstance(build_rnn("packed", 4, 8, 1), PackedBiLSTM)
    with pytest.raises(ValueError, match="model.rnn_impl must be one of auto, packed, split; got 'cudnn'"):
        build_rnn("cudnn", 4, 8, 1)


def test_training_flops_count_both_directions_forward_and_backward():
    assert training_flops_per_frame(640, 1024, 1) == 2 * 4 * 2 * 3 * 1024 * (640 + 1024)
    assert training_flops_per_frame(640, 1024, 5) == 48 * 1024 * (640 + 1024 + 4 * (2048 + 1024))


def test_a_model_trained_with_one_impl_runs_with_the_other(tmp_path):
    config = dict(rnn_layers=2, hidden_size=16)
    torch.manual_seed(0)
    packed = AcousticModel(29, model=ModelConfig(rnn_impl="packed", **config))
    optimizer = torch.optim.AdamW(packed.parameters(), lr=1e-2)
    waves, lengths = torch.randn(3, 12000) * 0.1, torch.tensor([12000, 9000, 5000])
    for _ in range(2):  # a couple of training steps, so no weight is at its initial value
        optimizer.zero_grad()
        packed(waves, lengths)[0].sum().backward()
        optimizer.step()
    torch.save({"state": packed.state_dict(), "config": packed.config_dict()}, tmp_path / "packed.pt")
    saved = torch.load(tmp_path / "packed.pt", weights_only=True)
    saved["config"]["model"]["rnn_impl"] = "split"
    split = AcousticModel.from_config_dict(saved["config"])
    split.load_state_dict(saved["state"])  # strict: every weight found under its new name
    assert isinstance(split.rnn, SplitBiLSTM)
    with torch.no_grad():
        expected, n = packed.eval()(waves, lengths)
        got, m = split.eval()(waves, lengths)
    assert torch.equal(n, m)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    again = AcousticModel(29, model=ModelConfig(rnn_impl="packed", **config))
    again.load_state_dict(split.state_dict())  # and back
    for a, b in zip(again.state_dict().values(), packed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_loads_with_either_impl(tiny_checkpoint, tmp_path):
    from asr.model.checkpoint import load_checkpoint

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    original = load_checkpoint(tiny_checkpoint).model
    ckpt["asr"]["model"]["model"]["rnn_impl"] = "packed" if isinstance(original.rnn, SplitBiLSTM) else "split"
    torch.save(ckpt, tmp_path / "other.ckpt")
    other = load_checkpoint(tmp_path / "other.ckpt").model
    assert type(other.rnn) is not type(original.rnn)
    waves, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 11000])
    with torch.no_grad():
        torch.testing.assert_close(other(waves, lengths)[0], original(waves, lengths)[0], atol=1e-5, rtol=1e-5)

