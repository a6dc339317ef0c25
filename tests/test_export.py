"""TorchScript export: the compiled model equals the PyTorch one, also loaded in a fresh interpreter."""

import json
import subprocess
import sys

import pytest
import torch

from asr.checkpoint import load_checkpoint
from asr.cli import export_main
from asr.export import EXPORT_TOLERANCE, check_inputs, max_difference, script
from asr.features import FeatureConfig
from asr.model import AcousticModel, ConvLayer, ModelConfig
from asr.text import CharTokenizer

TOK = CharTokenizer()


@pytest.mark.parametrize("impl, layers, normalize", [("split", 2, "utterance"), ("packed", 2, "utterance"),
                                                     ("split", 1, "none")])
def test_scripted_model_matches_pytorch(impl, layers, normalize):
    torch.manual_seed(0)
    config = ModelConfig(conv=[ConvLayer(4, (3, 3), (2, 2)), ConvLayer(4, (5, 3), (2, 2))], rnn_layers=layers,
                         hidden_size=16, rnn_impl=impl)
    model = AcousticModel(len(TOK), FeatureConfig(normalize=normalize), config).eval()
    scripted = script(model, TOK)
    assert max_difference(model, scripted, *check_inputs(16_000)) <= EXPORT_TOLERANCE


def test_exported_file_runs_without_asr_and_matches_pytorch(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.ts"
    assert export_main([str(tiny_checkpoint), "-o", str(out)]) == 0
    assert "largest log-prob difference" in capsys.readouterr().out
    waves, lengths = check_inputs(16_000)
    waves, lengths = waves[:, :30_000] * 2, lengths.clamp(max=30_000)  # not the inputs the export was checked on
    torch.save({"waves": waves, "lengths": lengths}, tmp_path / "inputs.pt")
    code = (f"import sys, json, torch; m = torch.jit.load({str(out)!r}); x = torch.load({str(tmp_path / 'inputs.pt')!r});"
            f"lp, n = m(x['waves'], x['lengths']); torch.save({{'lp': lp, 'n': n}}, {str(tmp_path / 'out.pt')!r});"
            "print(json.dumps({'asr': 'asr' in sys.modules, 'rate': m.sample_rate, 'symbols': json.loads(m.symbols)}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info == {"asr": False, "rate": 16_000, "symbols": TOK.symbols}
    got = torch.load(tmp_path / "out.pt")
    model = load_checkpoint(tiny_checkpoint).model
    with torch.inference_mode():
        expected, frames = model(waves, lengths)
    assert torch.equal(got["n"], frames)
    valid = torch.arange(expected.shape[1])[None, :] < frames[:, None]
    assert (got["lp"] - expected).abs()[valid].max() <= EXPORT_TOLERANCE


def test_export_of_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert export_main([str(tmp_path / "none.ckpt"), "-o", str(tmp_path / "m.ts")]) == 2
    assert capsys.readouterr().err.strip() == f"export.py: error: {tmp_path / 'none.ckpt'}: checkpoint not found"
