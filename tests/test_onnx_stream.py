"""ONNX streaming equals PyTorch's: ``export.py --stream`` writes one streaming window step (LSTM states in
and out), ONNX Runtime streams with the file alone, and its log-probs and text are those of the checkpoint
streamed in PyTorch; whole recordings go through the same file; other exports say how to stream."""

from __future__ import annotations

import contextlib
import io
import json
import random

import onnxruntime as ort
import pytest
import torch

import asr
from asr.cli.export import main as export_main
from asr.inference.emitters import METADATA_KEY, open_model
from asr.inference.export import ExportError, inference_model, onnx_bytes
from asr.inference.stream_export import export_stream
from asr.model import AcousticModel
from asr.model.checkpoint import checkpoint_metadata
from asr.model.streaming import StreamingModel
from asr.text import CharTokenizer
from tests.streams import babbling_model, stream_in_pieces, tone_tensor

RATE = 16_000
TOK = CharTokenizer()


def _model(normalize: str, chunk: float) -> AcousticModel:
    """Random weights that emit many symbols and blanks from noiseless tones."""
    return babbling_model(32, normalize, chunk)


def _save(model: AcousticModel, path) -> str:
    state = {"model." + k: v for k, v in model.state_dict().items()}
    torch.save({"asr": checkpoint_metadata(model, TOK, {}), "state_dict": state}, path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A chunked, globally normalized checkpoint exported by the CLI; a whole-utterance one (normalize=none)
    exported with a chunk given, and as a plain (non-streaming) ONNX file."""
    root = tmp_path_factory.mktemp("onnx_stream")
    out = {"global": _model("global", 0.3), "none": _model("none", 0.0)}
    out["global.ckpt"], out["none.ckpt"] = _save(out["global"], root / "g.ckpt"), _save(out["none"], root / "n.ckpt")
    out["global.onnx"], out["none.onnx"] = str(root / "g.stream.onnx"), str(root / "n.stream.onnx")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert export_main([out["global.ckpt"], "-o", out["global.onnx"], "--stream"]) == 0
    out["printed"] = printed.getvalue()
    export_stream(out["none.ckpt"], out["none.onnx"], chunk=0.3, right_context=0.1)
    (root / "plain.onnx").write_bytes(onnx_bytes(inference_model(out["none"]), TOK))
    out["plain.onnx"] = str(root / "plain.onnx")
    return out


def test_the_cli_writes_a_streaming_graph_with_states_in_and_out_and_its_arithmetic(files):
    assert files["printed"].startswith(f"{files['global.onnx']}: streaming ONNX float32, ")
    assert "chunk 0.30 s, right context 0.21 s, latency 0.54 s; largest log-prob difference" in files["printed"]
    session = ort.InferenceSession(files["global.onnx"], providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    meta = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    g = meta["stream"]["geometry"]
    assert (g["chunk"], g["right"], g["stride"]) == (10, 7, 3)  # 0.3 s and 0.2 s at 33.3 frames/s
    assert list(inputs) == ["samples", "first_frame", "total_samples", "h", "c"]
    assert list(outputs) == ["log_probs", "h_out", "c_out"]
    assert inputs["h"] == [2, "batch", 32] and outputs["log_probs"] == ["batch", 17, len(TOK)]
    assert abs(meta["stream"]["latency"] - StreamingModel(files["global"]).latency) < 1e-9
    # What a server waits for before stepping a stream (asr.serving.engine): the same samples in both runtimes.
    engine, reference = open_model(files["global.onnx"], threads=1)[0].stream_engine, StreamingModel(files["global"])
    states = [engine.new_state(), reference.new_state()]
    for chunk in range(3):
        states[0].chunk = states[1].chunk = chunk
        assert engine.next_chunk_samples(states[0]) == reference.next_chunk_samples(states[1])
    assert reference.next_chunk_samples(states[1]) == round(reference.latency * RATE) + 2 * 10 * 3 * 160


@pytest.mark.parametrize("normalize", ["global", "none"])
def test_onnx_streaming_equals_pytorch_streaming(files, normalize):
    model = files[normalize]
    engine = open_model(files[f"{normalize}.onnx"], threads=1)[0].stream_engine
    reference = StreamingModel(model, *((None, None) if normalize == "global" else (0.3, 0.1)))
    audio = [torch.randn(n) * 0.1 for n in (3 * RATE + 77, 1234, RATE // 2, 2 * RATE)]
    with torch.no_grad():
        expected = stream_in_pieces(reference, audio, seed=3)
    for got, want in zip(stream_in_pieces(engine, audio, seed=5), expected):  # other pieces, other batches
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4


def test_the_exported_stream_ends_with_the_checkpoints_stream_text(files):
    audio = tone_tensor(6.0, seed=1, noise=0)
    texts = []
    for path in (files["global.ckpt"], files["global.onnx"]):
        stream, rng, position = asr.load(path, device="cpu").stream(), random.Random(2), 0
        while position < audio.numel():
            piece = rng.randint(1, 5000)
            stream.accept(audio[position: position + piece])
            position += piece
        assert stream.finish().final
        texts.append((stream.text, [(w.word, round(w.start, 3), round(w.end, 3)) for w in stream.words]))
    assert texts[0] == texts[1] and len(texts[0][1]) >= 3
    recognizers = [asr.load(files[k], device="cpu") for k in ("global.ckpt", "global.onnx")]
    assert recognizers[0].transcribe_waveforms([audio]) == recognizers[1].transcribe_waveforms([audio])


def test_other_exports_and_other_latencies_say_how_to_stream(files, tmp_path, capsys):
    # A chunked model's LSTMs read chunks: a whole-file export says to export it for streaming (used for files too).
    assert export_main([files["global.ckpt"], "-o", str(tmp_path / "plain.int8.onnx"), "--quantize", "int8"]) == 2
    assert "trained chunked (model.chunk=0.3, model.right_context=0.2): export it as a streaming ONNX file" in \
        capsys.readouterr().err and not any(tmp_path.iterdir())
    plain = asr.load(files["plain.onnx"])
    with pytest.raises(ValueError, match=rf"^{files['plain.onnx']}: this ONNX Runtime float32 export does not stream; "
                                         r"export a streaming ONNX file .* --stream"):
        plain.stream()
    with pytest.raises(ValueError, match="chunk 0.3 s and right context 0.21 s, fixed at export.*--chunk S"):
        asr.load(files["global.onnx"]).stream(chunk=0.5)
    assert asr.load(files["global.onnx"]).stream(chunk=0.3, right_context=0.2).engine.chunk == 10
    with pytest.raises(ExportError, match="trained with model.chunk=0.*--chunk 0.4 --right-context 0.4"):
        export_stream(files["none.ckpt"], files["none.onnx"] + ".again.onnx")
    assert export_main([files["none.ckpt"], "-o", "x.pt2", "--chunk", "0.4"]) == 2
