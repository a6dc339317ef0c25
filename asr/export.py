"""Export: a checkpoint -> one file that transcribes without asr: TorchScript or ONNX, float32 or int8.

What is exported is the :class:`~asr.model.AcousticModel` itself, the code that trains: its inference
path (log-mel features, convolutions, split BiLSTM, output layer) compiled by ``torch.jit.script``,
so padding stays exact and no stage is written twice. ONNX is exported from that compiled module by
PyTorch's TorchScript-based exporter (``torch.export``, behind the newer exporter, fixes the number
of frames of an LSTM to the example's: pytorch/pytorch#191855); the split LSTM's CUDA-only batch
padding is off there. A model trained with ``rnn_impl=packed`` is exported as the split stack with
the same weights.

    m = torch.jit.load("model.ts")                      # TorchScript: torch alone
    log_probs, frames = m(waveforms, lengths)           # (batch, samples) float32 at m.sample_rate, (batch,) int64
    symbols = json.loads(m.symbols)                     # id -> symbol; id 0 is the CTC blank, " " the word boundary

    s = onnxruntime.InferenceSession("model.onnx")      # ONNX: dynamic batch and length axes, opset ONNX_OPSET
    log_probs, frames = s.run(None, {"waveforms": w, "lengths": n})
    meta = s.get_modelmeta().custom_metadata_map        # "sample_rate", "frame_rate", "symbols" (JSON), "asr_export"

Both carry ``asr_export`` (JSON, :func:`export_metadata`): the export format, the tokenizer and the
frame arithmetic, so ``asr.load`` and ``decode.py`` need the file alone (:mod:`asr.emitters` reads it).

int8 (``quantize="int8"``): dynamic quantization of the LSTMs and the output layer, weights int8,
activations quantized at run time. TorchScript: PyTorch's ``quantize_dynamic``; ONNX: ONNX Runtime's
(``DynamicQuantizeLSTM``, ``MatMulInteger``); the features and convolutions stay float32. Activation
scales are taken per tensor, so an int8 model's output depends on its batch by quantization noise.

Every export is run on a batch of CHECK_SECONDS speech-like waveforms and compared with the float32
PyTorch model (:func:`difference`): a float32 form's largest log-prob difference must stay within
EXPORT_TOLERANCE; an int8 form's mean distance between its per-frame distributions and the model's
(total variation: the share of a frame's probability mass that moved) within INT8_TOLERANCE, a
bound that only a broken export exceeds (a trained default-recipe model: 0.01 for both, 0.50 with
the mel filterbank quantized too; the int8 log-prob of a symbol the model rules out moves a lot and
changes nothing).
The file is written only if it passes, atomically.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from asr.checkpoint import load_checkpoint
from asr.features import time_mask
from asr.files import atomic_write
from asr.model import AcousticModel
from asr.text import CharTokenizer

EXPORT_FORMAT = 1  # version of the files' metadata (asr_export); asr.emitters refuses other versions
METADATA_KEY = "asr_export"
EXPORT_TOLERANCE = 1e-4  # largest |log-prob difference| accepted between a float32 export and PyTorch
INT8_TOLERANCE = 0.05  # mean total-variation distance per frame accepted between an int8 export and float32 PyTorch
CHECK_SECONDS = (1.0, 2.7, 0.3)  # lengths of the random waveforms an export is checked on
ONNX_OPSET = 17  # ONNX Runtime runs it on every CPU
ONNX_INPUTS, ONNX_OUTPUTS = ("waveforms", "lengths"), ("log_probs", "frames")
FORMATS = {".ts": "torchscript", ".pt": "torchscript", ".onnx": "onnx"}  # output suffix -> format
FORMAT_NAMES = {"torchscript": "TorchScript", "onnx": "ONNX"}
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
            "symbols": tokenizer.symbols, "tokenizer": tokenizer.to_dict()}


def inference_model(model: AcousticModel) -> AcousticModel:
    """A float32 CPU copy of ``model`` in eval mode with the split LSTM stack (weights converted)."""
    config = dataclasses.replace(model.model_config, rnn_impl="split")
    out = AcousticModel(model.head.out_features, model.feature_config, config)
    out.load_state_dict(model.state_dict())  # the LSTM stack renames packed weights on load
    return out.float().cpu().eval()


def quantize_int8(model: AcousticModel) -> nn.Module:
    """``model`` with PyTorch dynamic int8 quantization of its LSTMs and linear layers (a copy)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization points at torchao
        return quantize_dynamic(inference_model(model), {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def script(model: nn.Module, metadata: dict[str, Any] | None = None) -> torch.jit.ScriptModule:
    """``model`` compiled with ``torch.jit.script``; ``metadata`` becomes its attributes ``asr_export``
    (JSON), ``symbols`` (JSON), ``sample_rate`` and ``frame_rate``. TorchScript is deprecated in
    favour of ``torch.export`` (see the module docstring); the warning saying so is silenced."""
    model = copy.copy(model)  # attributes are added to a shallow copy, the caller's model is left alone
    if metadata is not None:
        model.asr_export = json.dumps(metadata, ensure_ascii=False)
        model.symbols = json.dumps(metadata["symbols"], ensure_ascii=False)
        model.sample_rate, model.frame_rate = int(metadata["sample_rate"]), float(metadata["frame_rate"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
        return torch.jit.script(model.eval())


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


# --- TorchScript ----------------------------------------------------------------------------------


def torchscript_bytes(model: AcousticModel, tokenizer: CharTokenizer, quantize: str | None = None) -> bytes:
    """The TorchScript file of ``model`` (float32, or ``quantize="int8"``), as bytes."""
    base = quantize_int8(model) if quantize == "int8" else inference_model(model)
    scripted = script(base, export_metadata(model, tokenizer, "torchscript", quantize))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.save points at torch.export
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


# --- ONNX -----------------------------------------------------------------------------------------


def _need_onnx(quantize: str | None) -> None:
    try:
        import onnx  # noqa: F401
        if quantize:
            import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ExportError(f"{'an int8 ' if quantize else 'an '}ONNX export needs the onnx extra ({err.name} is "
                          "not installed): pip install 'asr[onnx]'") from None


@contextmanager
def _onnx_symbolics() -> Iterator[None]:
    """For the duration of one export, teach the TorchScript-based exporter the one op of the model
    it does not map: ``Tensor.is_cuda`` (the split LSTM pads CUDA batches for cuDNN) is false."""
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    def is_cuda(g, x):
        return g.op("Constant", value_t=torch.tensor(False))

    register_custom_op_symbolic("prim::is_cuda", is_cuda, ONNX_OPSET)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("prim::is_cuda", ONNX_OPSET)


def onnx_bytes(model: AcousticModel, tokenizer: CharTokenizer, quantize: str | None = None) -> bytes:
    """The ONNX file of ``model`` (float32, or ``quantize="int8"`` by ONNX Runtime), as bytes."""
    _need_onnx(quantize)
    import onnx

    scripted = script(inference_model(model))
    waves, lengths = check_inputs(model.feature_config.sample_rate)
    axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"}, "frames": {0: "batch"}}
    with tempfile.TemporaryDirectory() as tmp, _onnx_symbolics(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation, constant folding and LSTM notes
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(scripted, (waves, lengths), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(ONNX_INPUTS), output_names=list(ONNX_OUTPUTS), dynamic_axes=axes)
        if quantize == "int8":
            path = _quantize_onnx(path)
        proto = onnx.load(str(path))
    meta = export_metadata(model, tokenizer, "onnx", quantize)
    plain = {"sample_rate": str(meta["sample_rate"]), "frame_rate": repr(meta["frame_rate"]),
             "symbols": json.dumps(meta["symbols"], ensure_ascii=False), METADATA_KEY: json.dumps(meta, ensure_ascii=False)}
    del proto.metadata_props[:]
    for key, value in plain.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.doc_string = "asr", "BiLSTM-CTC acoustic model, features inside (asr.export)"
    return proto.SerializeToString()


def _quantize_onnx(path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of the LSTMs and of the MatMuls after them (the
    output layer); the features' MatMul (the mel filterbank), before the first LSTM, stays float32.
    Told apart by their place in the graph (ONNX nodes are in topological order), not by name: a
    second export in one process loses the module scopes in the names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, out = path.with_name("pre.onnx"), path.with_name("int8.onnx")
    # The exporter stores the LSTM weights as Constant nodes; the quantizer wants initializers.
    quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
    nodes = list(onnx.load(str(pre)).graph.node)
    first_lstm = next(i for i, n in enumerate(nodes) if n.op_type == "LSTM")
    skip = [n.name for n in nodes[:first_lstm] if n.op_type == "MatMul"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs its pre-processing advice on the root logger
    try:
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM", "MatMul"],
                         nodes_to_exclude=skip)
    finally:
        root.setLevel(level)
    return out


# --- checked export -------------------------------------------------------------------------------


def export_format(output: str | os.PathLike) -> str:
    """"torchscript" or "onnx" from the output's suffix; ExportError naming the suffixes otherwise."""
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{output}: unknown export format {suffix or '(no suffix)'!r}; "
                          f"name the file {' or '.join(f'*{s}' for s in FORMATS)}")
    return FORMATS[suffix]


def export(checkpoint: str | os.PathLike, output: str | os.PathLike, quantize: str | None = None,
           tolerance: float | None = None, threads: int | None = None) -> tuple[float, float]:
    """Export a checkpoint to ``output`` (format from the suffix: .ts/.pt TorchScript, .onnx ONNX),
    check it against the float32 PyTorch model, write it atomically; return the :func:`difference`
    and the tolerance it met (ExportError above it; default EXPORT_TOLERANCE, INT8_TOLERANCE for int8)."""
    from asr.emitters import open_model

    fmt = export_format(output)
    if fmt == "onnx":
        try:
            _need_onnx(quantize)
        except ExportError as err:
            raise ExportError(f"{output}: {err}") from None
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)} (or none)")
    tolerance = tolerance if tolerance is not None else INT8_TOLERANCE if quantize else EXPORT_TOLERANCE
    loaded = load_checkpoint(checkpoint)
    model = inference_model(loaded.model)
    data = (onnx_bytes if fmt == "onnx" else torchscript_bytes)(model, loaded.tokenizer, quantize)
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
