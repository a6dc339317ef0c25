"""Export: a checkpoint -> one file that transcribes without asr: an ExportedProgram, ONNX, or TorchScript int8.

What is exported is the :class:`~asr.model.AcousticModel` itself, the code that trains: its inference
path (log-mel features, convolutions, split BiLSTM, output layer), so padding stays exact and no
stage is written twice, except the LSTMs, which :mod:`asr.inference.exportable` swaps for forms
``torch.export`` can trace with any number of frames (same weights). A model trained with
``rnn_impl=packed`` is exported as the split stack with the same weights.

    program = torch.export.load("model.pt2").module()   # ExportedProgram (torch.export): torch alone, CPU
    log_probs, frames = program(waveforms, lengths)     # (batch, samples) float32 at 16 kHz, (batch,) int64

    s = onnxruntime.InferenceSession("model.onnx")      # ONNX (torch.export-based exporter), opset ONNX_OPSET
    log_probs, frames = s.run(None, {"waveforms": w, "lengths": n})
    meta = s.get_modelmeta().custom_metadata_map        # "sample_rate", "frame_rate", "symbols" (JSON), "asr_export"

Every file carries ``asr_export`` (JSON, :func:`export_metadata`; in a ``.pt2`` the extra file
``asr_export.json``): the export format, the tokenizer, the frame arithmetic and the shortest input
(``min_samples``: torch.export's shape range; shorter batches are padded), so ``asr.load`` and
``decode.py`` need the file alone (:mod:`asr.inference.emitters` reads it).

int8 (``quantize="int8"``): dynamic quantization of the LSTMs and the output layer, weights int8,
activations quantized at run time. ONNX: ONNX Runtime's (``DynamicQuantizeLSTM``, ``MatMulInteger``),
the features and convolutions float32. PyTorch: ``quantize_dynamic`` written as TorchScript
(``.ts``), the one path left on deprecated APIs (see :func:`torchscript_int8_bytes`). Activation
scales are taken per tensor, so an int8 model's output depends on its batch by quantization noise.

Every export is run on a batch of CHECK_SECONDS speech-like waveforms and compared with the float32
PyTorch model (:func:`difference`): a float32 form's largest log-prob difference must stay within
EXPORT_TOLERANCE; an int8 form's mean distance between its per-frame distributions and the model's
(total variation: the share of a frame's probability mass that moved) within INT8_TOLERANCE, a
bound that only a broken export exceeds (a trained default-recipe model: 0.01 for both, 0.50 with
the mel filterbank quantized too; the int8 log-prob of a symbol the model rules out moves a lot and
changes nothing). The file is written only if it passes, atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from asr.files import atomic_write
from asr.inference.emitters import EXPORT_FORMAT, FORMATS, METADATA_KEY, ONNX_INPUTS, ONNX_OUTPUTS, open_model
from asr.inference.exportable import ONNX_TRANSLATIONS, OnnxLSTM, ScanLSTM, exportable
from asr.model.acoustic import AcousticModel
from asr.model.checkpoint import load_checkpoint
from asr.model.features import time_mask
from asr.text import CharTokenizer

EXPORT_TOLERANCE = 1e-4  # largest |log-prob difference| accepted between a float32 export and PyTorch
INT8_TOLERANCE = 0.05  # mean total-variation distance per frame accepted between an int8 export and float32 PyTorch
CHECK_SECONDS = (1.0, 2.7, 0.3)  # lengths of the random waveforms an export is traced with and checked on
ONNX_OPSET = 18  # the torch.export-based exporter's; ONNX Runtime runs it on every CPU
MIN_INPUT_FRAMES = 2  # shortest input exported, in output frames: torch.export needs a range without 0 and 1
FORMAT_NAMES = {"exported_program": "ExportedProgram", "torchscript": "TorchScript", "onnx": "ONNX"}
QUANTIZATIONS = ("int8",)
_CHECK_SEED = 0


class ExportError(RuntimeError):
    """An export that cannot be written, or that does not reproduce the model; the message says which."""


def export_metadata(model: AcousticModel, tokenizer: CharTokenizer, fmt: str, quantize: str | None) -> dict[str, Any]:
    """What an exported file says about itself (METADATA_KEY): enough to decode with the file alone."""
    from asr import __version__

    sub = model.subsampling
    return {"format": EXPORT_FORMAT, "asr_version": __version__, "backend": fmt, "quantize": quantize,
            "sample_rate": model.feature_config.sample_rate, "hop_length": model.feature_config.hop_length,
            "time_kernels": list(sub.time_kernels), "time_strides": list(sub.time_strides),
            "vocab_size": model.head.out_features, "frame_rate": model.output_frame_rate,
            "min_samples": min_samples(model), "symbols": tokenizer.symbols, "tokenizer": tokenizer.to_dict()}


def min_samples(model: AcousticModel) -> int:
    """The shortest waveform an export takes (MIN_INPUT_FRAMES output frames)."""
    return MIN_INPUT_FRAMES * model.feature_config.hop_length * model.subsampling.time_stride


def inference_model(model: AcousticModel) -> AcousticModel:
    """A float32 CPU copy of ``model`` in eval mode with the split LSTM stack (weights converted)."""
    config = dataclasses.replace(model.model_config, rnn_impl="split")
    out = AcousticModel(model.head.out_features, model.feature_config, config)
    out.load_state_dict(model.state_dict())  # the LSTM stack renames packed weights on load
    return out.float().cpu().eval()


def check_inputs(sample_rate: int, seconds: tuple[float, ...] = CHECK_SECONDS) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of speech-like waveforms of ``seconds`` (different lengths, so padding is
    checked): a voice of 24 harmonics on a gliding pitch, its level swept over 60 dB four times a
    second, over faint noise. The spectrum's range matters: an int8 export that quantized the mel
    filterbank gives white noise its log-mel but not this signal's."""
    gen = torch.Generator().manual_seed(_CHECK_SEED)
    lengths = torch.tensor([int(s * sample_rate) for s in seconds])
    t = torch.arange(int(lengths.max())) / sample_rate
    pitch = 120 + 60 * torch.sin(2 * math.pi * 0.7 * t)  # Hz
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 25)) * (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t)) ** 3
    waves = 0.1 * voice + 1e-3 * torch.randn(len(lengths), t.numel(), generator=gen)
    return waves * time_mask(lengths, waves.shape[1]), lengths


def _valid(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two outputs' log-probs at the valid frames, ``(frames, vocab)`` each; ExportError if the
    frame counts differ."""
    (lp, frames), (lp2, frames2) = expected, (torch.as_tensor(got[0]), torch.as_tensor(got[1]))
    if not torch.equal(frames.cpu(), frames2.cpu()):
        raise ExportError(f"frame counts differ: {frames.tolist()} vs {frames2.tolist()}")
    valid = time_mask(frames, lp.shape[1])
    return lp[valid], lp2[valid]


def max_difference(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Largest |log-prob difference| of two ``(log_probs, frames)`` over the valid frames."""
    a, b = _valid(expected, got)
    return float((a - b).abs().max()) if a.numel() else 0.0


def mean_distance(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean over the valid frames of the total-variation distance between the two distributions."""
    a, b = _valid(expected, got)
    return float(0.5 * (a.exp() - b.exp()).abs().sum(-1).mean()) if a.numel() else 0.0


def difference(expected: tuple[torch.Tensor, torch.Tensor], got: tuple[torch.Tensor, torch.Tensor],
               quantized: bool) -> float:
    """What an export is checked on: ``mean_distance`` for int8 forms, else ``max_difference``."""
    return (mean_distance if quantized else max_difference)(expected, got)


def _dynamic_shapes(model: AcousticModel) -> dict[str, dict[int, Any]]:
    """Any batch size, any length from :func:`min_samples` up."""
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=min_samples(model))
    return {"waveforms": {0: batch, 1: samples}, "lengths": {0: batch}}


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """No gradients while tracing (the LSTMs' scan would trace a backward pass too), and none of
    the tracers' notes about PyTorch's own internals on the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --- ExportedProgram (torch.export) ---------------------------------------------------------------


def exported_program_bytes(model: AcousticModel, tokenizer: CharTokenizer) -> bytes:
    """The ``.pt2`` file of ``model`` (float32): ``torch.export.save`` of its ExportedProgram, the
    metadata in the extra file ``asr_export.json``."""
    waves, lengths = check_inputs(model.feature_config.sample_rate)
    with _quiet_tracing():
        program = torch.export.export(exportable(model, ScanLSTM), (waves, lengths), strict=False,
                                      dynamic_shapes=_dynamic_shapes(model))
    meta = json.dumps(export_metadata(model, tokenizer, "exported_program", None), ensure_ascii=False)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_KEY + ".json": meta})
    return buffer.getvalue()


# --- ONNX -----------------------------------------------------------------------------------------


def _need_onnx(quantize: str | None) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the torch.export-based exporter's)
        if quantize:
            import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ExportError(f"{'an int8 ' if quantize else 'an '}ONNX export needs the onnx extra ({err.name} is "
                          "not installed): pip install 'asr[onnx]'") from None


def onnx_bytes(model: AcousticModel, tokenizer: CharTokenizer, quantize: str | None = None) -> bytes:
    """The ONNX file of ``model`` (float32, or ``quantize="int8"`` by ONNX Runtime), as bytes."""
    _need_onnx(quantize)

    waves, lengths = check_inputs(model.feature_config.sample_rate)
    with _quiet_tracing():
        program = torch.onnx.export(exportable(model, OnnxLSTM), (waves, lengths), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=list(ONNX_INPUTS), output_names=list(ONNX_OUTPUTS),
                                    dynamic_shapes=_dynamic_shapes(model), custom_translation_table=ONNX_TRANSLATIONS)
    return onnx_file_bytes(program.model_proto, quantize, export_metadata(model, tokenizer, "onnx", quantize),
                           "BiLSTM-CTC acoustic model, features inside (asr.inference.export)")


def onnx_file_bytes(proto, quantize: str | None, meta: dict, description: str) -> bytes:
    """An exported ONNX graph (``ModelProto``) -> the file's bytes: int8-quantized if asked, ``meta``
    (export_metadata's, or a streaming export's) stored as ONNX metadata, plain keys included."""
    import onnx

    if quantize == "int8":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save(proto, str(path))
            proto = onnx.load(str(_quantize_onnx(path)))
    plain = {"sample_rate": str(meta["sample_rate"]), "frame_rate": repr(meta["frame_rate"]),
             "symbols": json.dumps(meta["symbols"], ensure_ascii=False), METADATA_KEY: json.dumps(meta, ensure_ascii=False)}
    del proto.metadata_props[:]
    for key, value in plain.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.doc_string = "asr", description
    return proto.SerializeToString()


def _quantize_onnx(path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of the LSTMs and of the MatMuls after them (the
    output layer); the features' MatMul (the mel filterbank), before the first LSTM, stays float32.
    Told apart by their place in the graph (ONNX nodes are in topological order), not by name."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name("int8.onnx")
    nodes = list(onnx.load(str(path)).graph.node)
    first_lstm = next(i for i, n in enumerate(nodes) if n.op_type == "LSTM")
    skip = [n.name for n in nodes[:first_lstm] if n.op_type == "MatMul"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs its pre-processing advice on the root logger
    try:
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul"],
                         nodes_to_exclude=skip)
    finally:
        root.setLevel(level)
    return out


# --- TorchScript int8 -----------------------------------------------------------------------------


def quantize_int8(model: AcousticModel) -> nn.Module:
    """``model`` with PyTorch dynamic int8 quantization of its LSTMs and linear layers (a copy)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization points at torchao: see below
        return quantize_dynamic(inference_model(model), {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def torchscript_int8_bytes(model: AcousticModel, tokenizer: CharTokenizer) -> bytes:
    """The ``.ts`` file of ``model`` with PyTorch dynamic int8 quantization of its LSTMs and linear layers.

    The one export left on deprecated APIs (``torch.ao.quantization.quantize_dynamic``,
    ``torch.jit.script``), for int8 in PyTorch: in PyTorch 2.11, ``torch.export`` traces neither the
    quantized LSTM modules nor ``nn.LSTM`` over a symbolic number of frames, and the PT2E int8 flow
    has moved to the separate torchao package. Their DeprecationWarnings are silenced here, in this
    call only; float32 goes through ``torch.export`` (``.pt2``) and int8 ONNX needs none of them."""
    meta = export_metadata(model, tokenizer, "torchscript", "int8")
    quantized = quantize_int8(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized.asr_export = json.dumps(meta, ensure_ascii=False)
        quantized.symbols = json.dumps(meta["symbols"], ensure_ascii=False)
        quantized.sample_rate, quantized.frame_rate = int(meta["sample_rate"]), float(meta["frame_rate"])
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(quantized.eval()), buffer)
    return buffer.getvalue()


# --- checked export -------------------------------------------------------------------------------


def export_format(output: str | os.PathLike, quantize: str | None = None) -> str:
    """"exported_program", "onnx" or "torchscript" from the output's suffix; ExportError naming the
    suffixes otherwise, or for a float32 ``.ts`` (TorchScript is written for int8 only)."""
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{output}: unknown export format {suffix or '(no suffix)'!r}; name the file *.pt2 "
                          "(torch.export), *.onnx, or *.ts with --quantize int8 (TorchScript)")
    fmt = FORMATS[suffix]
    if fmt == "torchscript" and quantize is None:
        raise ExportError(f"{output}: float32 TorchScript is no longer written (torch.jit is deprecated): name the "
                          "file *.pt2 (torch.export; decode.py and asr.load() take it as they took .ts), or add "
                          "--quantize int8 for an int8 TorchScript file")
    if fmt == "exported_program" and quantize is not None:
        raise ExportError(f"{output}: int8 is written as ONNX (*.onnx) or TorchScript (*.ts), not as an "
                          "ExportedProgram: torch.export has no int8 LSTM in PyTorch 2.11")
    return fmt


def export(checkpoint: str | os.PathLike, output: str | os.PathLike, quantize: str | None = None,
           tolerance: float | None = None, threads: int | None = None) -> tuple[float, float]:
    """Export a checkpoint to ``output`` (format from the suffix: .pt2 ExportedProgram, .onnx ONNX,
    .ts int8 TorchScript), check it against the float32 PyTorch model, write it atomically; return the
    :func:`difference` and the tolerance it met (ExportError above it; default EXPORT_TOLERANCE,
    INT8_TOLERANCE for int8)."""
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)} (or none)")
    fmt = export_format(output, quantize)
    if fmt == "onnx":
        try:
            _need_onnx(quantize)
        except ExportError as err:
            raise ExportError(f"{output}: {err}") from None
    tolerance = tolerance if tolerance is not None else INT8_TOLERANCE if quantize else EXPORT_TOLERANCE
    loaded = load_checkpoint(checkpoint)
    if loaded.model.chunk_frames > 0:  # its LSTMs read chunks: only the streaming graph has them
        config = loaded.model.model_config
        raise ExportError(f"{checkpoint}: this model was trained chunked (model.chunk={config.chunk:g}, "
                          f"model.right_context={config.right_context:g}): export it as a streaming ONNX file, "
                          "which decode.py and asr.load() also use for whole files: export.py CHECKPOINT "
                          "-o model.stream.onnx --stream")
    model = inference_model(loaded.model)
    if fmt == "onnx":
        data = onnx_bytes(model, loaded.tokenizer, quantize)
    elif fmt == "exported_program":
        data = exported_program_bytes(model, loaded.tokenizer)
    else:
        data = torchscript_int8_bytes(model, loaded.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:  # checked as it will be loaded: from the file
        path = Path(tmp) / Path(output).name
        path.write_bytes(data)
        emitter, _ = open_model(path, device="cpu", threads=threads)
        waves, lengths = check_inputs(model.feature_config.sample_rate)
        with torch.inference_mode():
            diff = difference(model(waves, lengths), emitter(waves, lengths), quantize is not None)
        del emitter
    if not diff <= tolerance:
        kind = "mean probability distance" if quantize else "largest log-prob difference"
        raise ExportError(f"{checkpoint}: the {FORMAT_NAMES[fmt]} {quantize or 'float32'} export's {kind} from the "
                          f"model is {diff:.2e} (> {tolerance:g}): a broken export; nothing written")
    with atomic_write(output, "wb") as f:
        f.write(data)
    return diff, tolerance
