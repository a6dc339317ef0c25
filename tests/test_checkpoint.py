import subprocess
import sys

import pytest
import torch
import yaml

import asr
from asr.model.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import ROOT


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.model.model_config.hidden_size == 32
    assert loaded.tokenizer.symbols[0] == "<blank>"
    assert loaded.config["model"]["hidden_size"] == 32, "the resolved run config travels with the weights"
    state = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state[f"model.{name}"])


def test_resolved_config_is_saved_beside_the_checkpoints(tiny_checkpoint):
    cfg = yaml.safe_load((tiny_checkpoint.parent / "config.yaml").read_text())
    assert cfg["model"]["rnn_layers"] == 1 and cfg["data"]["corpus"]["_target_"].endswith("ManifestCorpus")


def test_load_and_transcribe_round_trip(tiny_checkpoint, chirp_manifests):
    from asr.data.manifest import read_manifest

    utts = read_manifest(chirp_manifests["test"])
    recognizer = asr.load(tiny_checkpoint, device="cpu")
    one = recognizer.transcribe(utts[0].audio)
    many = recognizer.transcribe([u.audio for u in utts])
    assert isinstance(one, asr.Transcript) and one.path == utts[0].audio
    assert [t.path for t in many] == [u.audio for u in utts]
    assert many[0].text == one.text  # batching does not change the result
    assert set("".join(t.text for t in many)) <= set(recognizer.tokenizer.symbols)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not an asr checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")


def test_importing_asr_for_inference_does_not_import_lightning():
    code = "import sys, asr; asr.load; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
