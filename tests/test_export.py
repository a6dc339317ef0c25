"""Export: the AcousticModel itself exports with torch.export (its LSTMs in exportable forms); every
exported form (ExportedProgram, ONNX float32 and int8, TorchScript int8) reproduces PyTorch, also
loaded in a fresh interpreter without asr; decode.py and asr.load take the files in place of the
checkpoint, and files written by earlier versions still; a file they cannot use is one line saying
what to do; exporting emits no DeprecationWarning."""

import contextlib
import io
import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

import asr
from asr.cli.decode import main as decode_main
from asr.cli.export import main as export_main
from asr.inference.export import (
    EXPORT_TOLERANCE,
    INT8_TOLERANCE,
    METADATA_KEY,
    check_inputs,
    difference,
    export_metadata,
    exported_program_bytes,
    inference_model,
    max_difference,
    min_samples,
    quantize_int8,
)
from asr.inference.exportable import OnnxLSTM, ScanLSTM
from asr.inference.writers import FORMATS as OUTPUT_FORMATS
from asr.model.acoustic import AcousticModel, ConvLayer, ModelConfig
from asr.model.checkpoint import load_checkpoint
from asr.model.features import FeatureConfig, LogMel
from asr.text import CharTokenizer

TOK = CharTokenizer()
FORMS = ("model.pt2", "model.int8.ts", "model.onnx", "model.int8.onnx")


def _small_model(impl, layers, normalize):
    torch.manual_seed(0)
    config = ModelConfig(conv=[ConvLayer(4, (3, 3), (2, 2)), ConvLayer(4, (5, 3), (2, 2))], rnn_layers=layers,
                         hidden_size=16, rnn_impl=impl)
    return AcousticModel(len(TOK), FeatureConfig(normalize=normalize), config).eval()


@pytest.mark.parametrize("n_mels, n_fft, win_length", [(40, 512, 400), (80, 512, 400), (80, 400, 400)])
def test_the_features_real_valued_stft_is_torchaudios_log_mel(n_mels, n_fft, win_length):
    """LogMel computes its power spectrum as a convolution with the DFT basis (exportable anywhere):
    the same log-mel as torchaudio's MelSpectrogram of the same zero-padded waveform."""
    config = FeatureConfig(n_mels=n_mels, n_fft=n_fft, win_length=win_length)
    features = LogMel(config)
    waves = 0.1 * torch.randn(3, 16_000, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(waves, (n_fft // 2, n_fft // 2))
    expected = torch.log(features.mel(padded) + config.log_floor)
    got = features._log_mel(waves)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-3  # float32 rounding of a sum of 400 products, in the log


@pytest.mark.parametrize("form", [ScanLSTM, OnnxLSTM])
def test_the_exportable_lstms_compute_what_nn_lstm_computes(form):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 8, batch_first=True)
    x = torch.randn(3, 17, 12)
    with torch.inference_mode():
        assert (form(lstm)(x)[0] - lstm(x)[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("impl, layers, normalize", [("split", 2, "utterance"), ("packed", 2, "utterance"),
                                                     ("split", 1, "none")])
def test_the_model_itself_exports_for_any_length_and_matches_pytorch_padding_included(impl, layers, normalize):
    """torch.export with symbolic batch and length: lengths never seen in tracing, each utterance
    alone as in its batch, and the shortest input the file declares."""
    model = _small_model(impl, layers, normalize)
    program = torch.export.load(io.BytesIO(exported_program_bytes(inference_model(model), TOK))).module()
    waves, lengths = check_inputs(16_000, (2.2, 0.9, 1.6))  # not the lengths it was traced with
    with torch.inference_mode():
        expected = model(waves, lengths)
        assert max_difference(expected, program(waves, lengths)) <= EXPORT_TOLERANCE
        for i, n in enumerate(lengths.tolist()):  # each utterance alone: what it got in the batch
            alone = program(waves[i : i + 1, :n], lengths[i : i + 1])
            frames = int(expected[1][i])
            assert int(alone[1][0]) == frames
            assert (alone[0][0, :frames] - expected[0][i, :frames]).abs().max() <= EXPORT_TOLERANCE
        shortest = torch.tensor([min_samples(model)])
        assert max_difference(model(waves[:1, :shortest[0]], shortest), program(waves[:1, :shortest[0]], shortest)) \
            <= EXPORT_TOLERANCE


@pytest.fixture(scope="module")
def export_runs(tiny_checkpoint, tmp_path_factory) -> dict:
    """The four forms of the tiny checkpoint, written by export.py with DeprecationWarning made an error
    (the project's own calls are off deprecated APIs): their folder and what export.py printed for each."""
    folder, printed = tmp_path_factory.mktemp("exports"), {}
    for name in FORMS:
        quantize = ["--quantize", "int8"] if ".int8." in name else []
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as out:
            warnings.simplefilter("error", DeprecationWarning)
            status = export_main([str(tiny_checkpoint), "-o", str(folder / name), *quantize])
        assert status == 0, out.getvalue()
        printed[name] = out.getvalue()
    return {"folder": folder, "printed": printed}


@pytest.fixture(scope="module")
def exports(export_runs):
    return export_runs["folder"]


def test_export_prints_what_it_wrote_and_the_difference(export_runs):
    path = export_runs["folder"] / "model.int8.onnx"
    out = export_runs["printed"]["model.int8.onnx"]
    assert out.startswith(f"{path}: ONNX int8, ") and "mean probability distance" in out
    assert f"(tolerance {INT8_TOLERANCE:g})" in out


# Runs in a fresh interpreter that never imports asr: what a deployment has.
_RUN_WITHOUT_ASR = """
import json, sys
import numpy as np, torch
folder, inputs = sys.argv[1], torch.load(sys.argv[2])
waves, lengths = inputs["waves"], inputs["lengths"]
out, info = {}, {}
for name in %r:
    path = f"{folder}/{name}"
    if name.endswith(".pt2"):
        extra = {"asr_export.json": ""}
        m = torch.export.load(path, extra_files=extra).module()
        run = lambda w, n: m(w, n)
        meta = json.loads(extra["asr_export.json"])
        info[name] = {"sample_rate": meta["sample_rate"], "frame_rate": meta["frame_rate"], "symbols": meta["symbols"]}
    elif name.endswith(".ts"):
        m = torch.jit.load(path)
        run = lambda w, n: m(w, n)
        info[name] = {"sample_rate": m.sample_rate, "frame_rate": m.frame_rate, "symbols": json.loads(m.symbols)}
    else:
        import onnxruntime
        s = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        run = lambda w, n: [torch.from_numpy(a) for a in s.run(None, {"waveforms": w.numpy(), "lengths": n.numpy()})]
        meta = s.get_modelmeta().custom_metadata_map
        info[name] = {"sample_rate": int(meta["sample_rate"]), "frame_rate": float(meta["frame_rate"]),
                      "symbols": json.loads(meta["symbols"])}
    with torch.inference_mode():
        out[name] = {"batch": run(waves, lengths),
                     "alone": [run(waves[i : i + 1, : int(n)], lengths[i : i + 1]) for i, n in enumerate(lengths)]}
torch.save(out, sys.argv[3])
print(json.dumps({"asr": any(m == "asr" or m.startswith("asr.") for m in sys.modules), "info": info}))
""" % (FORMS,)


def test_every_exported_form_runs_without_asr_and_matches_pytorch(exports, tiny_checkpoint, tmp_path):
    waves, lengths = check_inputs(16_000, (1.9, 0.4, 1.2))  # not the inputs the export was checked on
    waves = 2 * waves
    torch.save({"waves": waves, "lengths": lengths}, tmp_path / "inputs.pt")
    run = subprocess.run([sys.executable, "-c", _RUN_WITHOUT_ASR, str(exports), str(tmp_path / "inputs.pt"),
                          str(tmp_path / "out.pt")], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["asr"] is False
    model = load_checkpoint(tiny_checkpoint).model
    frame_rate = model.output_frame_rate
    for name in FORMS:
        assert result["info"][name] == {"sample_rate": 16_000, "frame_rate": frame_rate, "symbols": TOK.symbols}
    got = torch.load(tmp_path / "out.pt")
    with torch.inference_mode():
        float32 = model(waves, lengths)
        int8 = quantize_int8(model)(waves, lengths)
    checks = {"model.pt2": (float32, False, EXPORT_TOLERANCE),
              "model.int8.ts": (int8, False, EXPORT_TOLERANCE),  # exactly PyTorch's int8 model
              "model.onnx": (float32, False, EXPORT_TOLERANCE),
              "model.int8.onnx": (float32, True, INT8_TOLERANCE)}  # ONNX Runtime's int8 against float32
    for name, (expected, quantized, tolerance) in checks.items():
        assert difference(expected, got[name]["batch"], quantized) <= tolerance, name
        # padding: each utterance alone gets what it got in the batch (int8: up to quantization noise,
        # its activation scales are the batch's)
        int8_form = ".int8." in name
        for i, alone in enumerate(got[name]["alone"]):
            n = int(got[name]["batch"][1][i])
            batched = (got[name]["batch"][0][i : i + 1, :n], torch.tensor([n]))
            assert difference(batched, (alone[0][:, :n], alone[1]), int8_form) <= (
                INT8_TOLERANCE if int8_form else EXPORT_TOLERANCE), name


def test_int8_onnx_quantizes_the_lstms_and_output_layer_and_leaves_the_features_float(exports):
    """What is quantized is found by its place in the graph: the fixture's int8 export came after
    another export in the same process, whose graphs lose the module names (the mel filterbank
    quantized too gave a trained model 107 % WER while noise inputs still passed)."""
    ops = [n.op_type for n in onnx.load(str(exports / "model.int8.onnx")).graph.node]
    first_lstm = ops.index("DynamicQuantizeLSTM")
    assert "LSTM" not in ops and ops.count("DynamicQuantizeLSTM") == 2  # the tiny model: one layer, two directions
    assert ops[:first_lstm].count("MatMul") == 1 and "MatMulInteger" not in ops[:first_lstm]  # the mel filterbank
    assert "MatMulInteger" in ops[first_lstm:] and "MatMul" not in ops[first_lstm:]  # the output layer


def _wavs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i, seconds in enumerate((1.3, 0.7)):
        t = np.arange(int(16000 * seconds)) / 16000
        sf.write(folder / f"u{i}.wav", 0.3 * np.sin(2 * np.pi * (250 + 200 * t) * t) + 0.02 * rng.standard_normal(t.size),
                 16000)
        paths.append(str(folder / f"u{i}.wav"))
    return paths


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_decode_reads_every_form_as_it_reads_the_checkpoint(exports, tiny_checkpoint, tmp_path, capsys, fmt):
    wavs = _wavs(tmp_path / "audio")
    outputs = {}
    for model in (tiny_checkpoint, *(exports / name for name in FORMS)):
        out = tmp_path / str(len(outputs))
        assert decode_main([str(model), *wavs, "--format", fmt, "-o", str(out), "--no-progress"]) == 0, model
        outputs[model.name] = (sorted(p.read_text() for p in out.iterdir()) if out.is_dir() else out.read_text())
        if fmt == "jsonl":
            lines = [json.loads(line) for line in out.read_text().splitlines()]
            assert [line["path"] for line in lines] == wavs and all("words" in line for line in lines)
    capsys.readouterr()
    reference = outputs.pop(tiny_checkpoint.name)
    assert outputs["model.pt2"] == reference and outputs["model.onnx"] == reference
    assert all(outputs[name] for name in ("model.int8.ts", "model.int8.onnx"))


def test_beam_search_and_asr_load_take_an_export(exports, tiny_checkpoint, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    wavs = _wavs(tmp_path / "audio")
    beam = asr.DecodeOptions("beam", beam_size=4)
    for name in ("model.onnx", "model.int8.ts"):
        checkpoint = asr.load(tiny_checkpoint, device="cpu", options=beam)
        exported = asr.load(exports / name, options=beam, threads=1)
        assert exported.device.type == "cpu" and exported.frame_rate == checkpoint.frame_rate
        got = exported.transcribe(wavs, words=True)
        if name == "model.onnx":
            assert [t.text for t in got] == [t.text for t in checkpoint.transcribe(wavs)]
        assert all(w.start <= w.end <= t.duration for t in got for w in t.words)


# --- files that cannot be used --------------------------------------------------------------------


def _older_and_foreign_files(folder, exports):
    """Files a user may give in place of an export, and how the one error line must go on."""
    folder.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.randn(1, 3),), str(folder / "other.onnx"), input_names=["x"])
        torch.export.save(torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),)), str(folder / "other.pt2"))
    with warnings.catch_warnings():  # what earlier versions wrote, and other programs may: TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(folder / "other.ts"))

    class OldExport(torch.nn.Module):  # what scripts/export.py wrote before the asr_export metadata
        def __init__(self):
            super().__init__()
            self.symbols, self.sample_rate, self.frame_rate = json.dumps(TOK.symbols), 16_000, 25.0

        def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
            return waveforms, lengths

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(OldExport()).save(str(folder / "old.ts"))
    for name, version in (("old.onnx", 0), ("new.onnx", 99)):
        proto = onnx.load(str(exports / "model.onnx"))
        for prop in proto.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps({**json.loads(prop.value), "format": version})
        onnx.save(proto, str(folder / name))
    again = "export it again from its checkpoint: scripts/export.py CHECKPOINT -o {}"
    return {"other.onnx": "an ONNX model asr did not export (no asr_export metadata; inputs x, not "
                          "waveforms, lengths); export the checkpoint of the model you want: "
                          "scripts/export.py CHECKPOINT -o other.onnx",
            "other.pt2": "an ExportedProgram asr did not export (no asr_export.json in it); export a checkpoint: "
                         "scripts/export.py CHECKPOINT -o other.pt2",
            "other.ts": "a TorchScript model (scripts/export.py writes these), but not one asr exported (no "
                        "asr_export entry); export a checkpoint: scripts/export.py CHECKPOINT -o other.ts",
            "old.ts": "a TorchScript model exported by an older asr (no asr_export entry); " + again.format("old.ts"),
            "old.onnx": "exported by an older asr (export format 0; this asr reads 1); " + again.format("old.onnx"),
            "new.onnx": "exported by a newer asr (export format 99; this asr reads 1); upgrade asr to load it"}


def test_a_file_from_another_model_or_version_is_one_line_saying_what_to_do(exports, tmp_path, capsys):
    wav = _wavs(tmp_path / "audio")[0]
    for name, says in _older_and_foreign_files(tmp_path / "bad", exports).items():
        assert decode_main([str(tmp_path / "bad" / name), wav, "--no-progress"]) == 2, name
        err = capsys.readouterr().err
        assert err == f"decode.py: error: {tmp_path / 'bad' / name}: {says}\n", err


def test_an_onnx_file_without_onnx_runtime_says_which_extra_to_install(exports, tiny_checkpoint, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    wav = _wavs(tmp_path / "audio")[0]
    model = exports / "model.int8.onnx"
    assert decode_main([str(model), wav, "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"decode.py: error: {model}: an ONNX model needs ONNX Runtime, which is not "
                                       "installed: pip install 'asr[onnx]' (or decode the checkpoint or its .pt2 "
                                       "export)\n")
    out = tmp_path / "m.int8.onnx"
    assert export_main([str(tiny_checkpoint), "-o", str(out), "--quantize", "int8"]) == 2
    assert capsys.readouterr().err == (f"export.py: error: {out}: an int8 ONNX export needs the onnx extra "
                                       "(onnxruntime is not installed): pip install 'asr[onnx]'\n")
    assert not out.exists()


def test_a_backend_that_does_not_run_the_file_is_one_line(exports, tiny_checkpoint, tmp_path, capsys):
    wav = _wavs(tmp_path / "audio")[0]
    assert decode_main([str(exports / "model.onnx"), wav, "--backend", "torch"]) == 2
    assert capsys.readouterr().err == (f"decode.py: error: {exports / 'model.onnx'}: an ONNX model, which runs with "
                                       "--backend onnxruntime, not torch; use --backend onnxruntime, or the "
                                       ".pt2 export or checkpoint of the same model\n")
    assert decode_main([str(tiny_checkpoint), wav, "--backend", "onnxruntime"]) == 2
    assert capsys.readouterr().err == (f"decode.py: error: {tiny_checkpoint}: a training checkpoint, which runs with "
                                       "--backend torch, not onnxruntime; export an ONNX file for it: "
                                       "scripts/export.py last.ckpt -o model.onnx\n")


def test_export_of_a_bad_checkpoint_or_to_an_unknown_format_is_one_line(tiny_checkpoint, tmp_path, capsys):
    assert export_main([str(tmp_path / "none.ckpt"), "-o", str(tmp_path / "m.pt2")]) == 2
    assert capsys.readouterr().err.strip() == f"export.py: error: {tmp_path / 'none.ckpt'}: checkpoint not found"
    assert export_main([str(tiny_checkpoint), "-o", str(tmp_path / "m.bin")]) == 2
    assert capsys.readouterr().err.strip() == (f"export.py: error: {tmp_path / 'm.bin'}: unknown export format "
                                               "'.bin'; name the file *.pt2 (torch.export), *.onnx, or *.ts with "
                                               "--quantize int8 (TorchScript)")
    assert export_main([str(tiny_checkpoint), "-o", str(tmp_path / "m.ts")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"export.py: error: {tmp_path / 'm.ts'}: float32 TorchScript is no longer written (torch.jit is deprecated): "
        "name the file *.pt2 (torch.export; decode.py and asr.load() take it as they took .ts), or add --quantize "
        "int8 for an int8 TorchScript file")
    assert export_main([str(tiny_checkpoint), "-o", str(tmp_path / "m.pt2"), "--quantize", "int8"]) == 2
    assert "int8 is written as ONNX (*.onnx) or TorchScript (*.ts)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _legacy_torchscript(model, path):
    """A float32 .ts file as asr 0.1's export.py wrote it (torch.jit.script of the model, metadata
    as attributes): such files keep loading."""
    scripted = inference_model(model)
    meta = export_metadata(scripted, TOK, "torchscript", None)
    scripted.asr_export, scripted.symbols = json.dumps(meta), json.dumps(meta["symbols"])
    scripted.sample_rate, scripted.frame_rate = meta["sample_rate"], meta["frame_rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(scripted).save(str(path))


def test_a_float32_torchscript_file_of_an_earlier_version_still_decodes(tiny_checkpoint, tmp_path, capsys):
    _legacy_torchscript(load_checkpoint(tiny_checkpoint).model, tmp_path / "old.ts")
    wavs = _wavs(tmp_path / "audio")
    assert decode_main([str(tmp_path / "old.ts"), *wavs, "-o", str(tmp_path / "old.tsv"), "--no-progress"]) == 0
    assert decode_main([str(tiny_checkpoint), *wavs, "-o", str(tmp_path / "ckpt.tsv"), "--no-progress"]) == 0
    assert (tmp_path / "old.tsv").read_text() == (tmp_path / "ckpt.tsv").read_text()


def test_exporting_every_form_emits_no_deprecation_warning(export_runs):
    """The project's own calls are off deprecated APIs (the int8 TorchScript path silences its own, and says
    why): export_runs turns DeprecationWarning into an error, and every form was written."""
    assert sorted(p.name for p in export_runs["folder"].iterdir()) == sorted(FORMS)
    assert all(export_runs["printed"][name].startswith(f"{export_runs['folder'] / name}: ") for name in FORMS)
