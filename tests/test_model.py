import torch

from asr.model.acoustic import AcousticModel, ConvLayer, ModelConfig
from asr.model.features import FeatureConfig, LogMel, SpecAugment, SpecAugmentConfig


def _padded(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randn(n, generator=g) * 0.1
    return batch, torch.tensor(lengths)


def test_logmel_shapes_and_frame_rate():
    cfg = FeatureConfig()
    feats, frames = LogMel(cfg)(*_padded([16000, 8000]))
    assert feats.shape == (2, 80, 101)
    assert frames.tolist() == [101, 51]
    assert cfg.frame_rate == 100
    assert feats[1, :, 51:].abs().sum() == 0  # padded frames are zero


def test_features_of_a_batched_utterance_equal_its_features_alone():
    lengths = [16000, 9000, 3000]
    batch, lens = _padded(lengths)
    feats, frames = LogMel(FeatureConfig())(batch, lens)
    for i, n in enumerate(lengths):
        alone, f = LogMel(FeatureConfig())(batch[i : i + 1, :n], lens[i : i + 1])
        torch.testing.assert_close(alone[0], feats[i, :, : f[0]], atol=1e-4, rtol=1e-4)


def test_utterance_normalization_gives_zero_mean_unit_variance():
    feats, frames = LogMel(FeatureConfig())(*_padded([16000]))
    assert feats.mean(-1).abs().max() < 1e-3
    assert (feats.std(-1, unbiased=False) - 1).abs().max() < 1e-2


def test_specaugment_masks_in_training_only():
    aug = SpecAugment(SpecAugmentConfig(freq_masks=2, freq_width=20, time_masks=2, time_width=20))
    x = torch.randn(4, 80, 200)
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(0)
    y = aug.train()(x)
    assert (y == 0).sum() > 0 and y.shape == x.shape


def test_output_lengths_follow_the_convolutions():
    model = AcousticModel(29, model=ModelConfig(conv=[ConvLayer(8, (3, 3), (2, 2)), ConvLayer(8, (5, 3), (3, 1))],
                                                rnn_layers=1, hidden_size=16))
    batch, lens = _padded([16000, 7000, 160])
    log_probs, out = model.eval()(batch, lens)
    frames = torch.tensor([101, 44, 2])  # feature frames: samples // 160 + 1
    expected = ((frames - 1) // 2 + 1 - 1) // 3 + 1  # stride 2 (kernel 3), then stride 3 (kernel 5)
    assert out.tolist() == expected.tolist()
    assert log_probs.shape == (3, int(expected.max()), 29)
    assert model.output_frame_rate == 100 / 6
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, int(expected.max())))


def test_model_output_does_not_depend_on_padding_or_batch():
    torch.manual_seed(0)
    model = AcousticModel(29, model=ModelConfig(rnn_layers=2, hidden_size=32)).eval()
    lengths = [24000, 15000, 4000]
    batch, lens = _padded(lengths)
    with torch.no_grad():
        log_probs, out = model(batch, lens)
        for i, n in enumerate(lengths):
            alone, o = model(batch[i : i + 1, :n], lens[i : i + 1])
            assert o[0] == out[i]
            torch.testing.assert_close(alone[0], log_probs[i, : o[0]], atol=1e-4, rtol=1e-4)


def test_config_round_trip_rebuilds_the_same_architecture():
    model = AcousticModel(30, model=ModelConfig(rnn_layers=1, hidden_size=24))
    again = AcousticModel.from_config_dict(model.config_dict())
    again.load_state_dict(model.state_dict())
    assert again.config_dict() == model.config_dict()
