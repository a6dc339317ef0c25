"""init_from=: a new run that starts from another run's weights (fine-tuning), with its own schedule."""

import pytest
import torch

from asr.config import ConfigError
from asr.model.checkpoint import CheckpointError, load_checkpoint
from asr.training.checkpoints import init_weights
from asr.training.train import build_model, build_tokenizer, train
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides

QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "test=false"]


def _model(*overrides):
    cfg = compose_config(*TINY_MODEL, *overrides)
    tokenizer = build_tokenizer(cfg.text)
    return build_model(cfg, len(tokenizer)), tokenizer


@pytest.mark.parametrize("rnn_impl", ["split", "packed"])
def test_init_weights_gives_the_checkpoints_model_whatever_the_rnn_layout(tiny_checkpoint, rnn_impl):
    source = load_checkpoint(tiny_checkpoint).model
    model, tokenizer = _model(f"model.rnn_impl={rnn_impl}", "model.dropout=0.3")
    wave, lengths = torch.randn(2, 16000), torch.tensor([16000, 11000])
    model.eval()
    assert not torch.allclose(model(wave, lengths)[0], source(wave, lengths)[0]), "a fresh init differs"
    init_weights(model, tokenizer, tiny_checkpoint)
    model.eval()
    torch.testing.assert_close(model(wave, lengths)[0], source(wave, lengths)[0])


def test_a_fine_tuning_run_starts_from_the_weights_with_a_fresh_schedule(tiny_checkpoint, chirp_manifests, tmp_path):
    source = torch.load(tiny_checkpoint, weights_only=True)
    assert source["global_step"] == 2
    overrides = [*manifest_overrides(chirp_manifests), *TINY_MODEL, *QUIET, "trainer.max_steps=1"]
    train(compose_config(*overrides, f"init_from={tiny_checkpoint}"), tmp_path / "tuned" / "run1")
    train(compose_config(*overrides, "seed=99"), tmp_path / "fresh" / "run1")
    tuned = torch.load(tmp_path / "tuned/run1/checkpoints/last.ckpt", weights_only=True)
    fresh = torch.load(tmp_path / "fresh/run1/checkpoints/last.ckpt", weights_only=True)
    assert tuned["global_step"] == 1, "the optimizer and schedule start afresh, not at the source's step"
    weights = [k for k, v in source["state_dict"].items() if v.is_floating_point() and "rnn" in k]
    # One warm-up step moves each weight by about lr / warmup_steps; a fresh init is far off.
    assert max((tuned["state_dict"][k] - source["state_dict"][k]).abs().max() for k in weights) < 1e-3
    assert max((fresh["state_dict"][k] - source["state_dict"][k]).abs().max() for k in weights) > 0.1
    assert tuned["asr"]["config"]["init_from"] == str(tiny_checkpoint), "the run config records where it started"


@pytest.mark.parametrize("override, message", [
    ("model.hidden_size=48", r"a different architecture \(rnn\..*\); set model\.\* as in its config.yaml"),
    # Same shapes, other frames: only the features' own check can catch it.
    ("features.hop_length=200", r"trained with features.hop_length=160, this run has 200; set features.hop_length=160"),
    ("text.alphabet=abcdefghijklmnopqrstuvwxyz", r"its symbols .* differ from this run's .*\(text.alphabet\)"),
])
def test_an_incompatible_checkpoint_is_one_line_naming_what_differs(tiny_checkpoint, chirp_manifests, tmp_path,
                                                                    override, message):
    cfg = compose_config(*manifest_overrides(chirp_manifests), *TINY_MODEL, *QUIET, override,
                         f"init_from={tiny_checkpoint}")
    with pytest.raises(ConfigError, match=rf"^init_from={tiny_checkpoint}: {message}") as err:
        train(cfg, tmp_path / "run")
    assert "\n" not in str(err.value)


def test_a_missing_or_foreign_init_from_file_is_refused_before_training(chirp_manifests, tmp_path):
    overrides = [*manifest_overrides(chirp_manifests), *TINY_MODEL, *QUIET]
    with pytest.raises(ConfigError, match=r"^init_from=.*nothing.ckpt: no such checkpoint"):
        train(compose_config(*overrides, f"init_from={tmp_path / 'nothing.ckpt'}"), tmp_path / "run")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    model, tokenizer = _model()
    with pytest.raises(CheckpointError, match="junk.ckpt: not a readable PyTorch checkpoint"):
        init_weights(model, tokenizer, tmp_path / "junk.ckpt")
