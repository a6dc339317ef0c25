"""Emitters: padded waveforms -> CTC log-probs, whatever runs the model. A Recognizer reads one.

    emitter, tokenizer = open_model("model.onnx")         # a .ckpt, .pt2, .onnx or .ts; float32 or int8
    log_probs, frames = emitter(waveforms, lengths)        # CPU (batch, frames, vocab) float32, (batch,) int64
    emitter.output_frames(16_000), emitter.samples_per_frame, emitter.sample_rate

- :class:`TorchEmitter`: an :class:`~asr.model.AcousticModel` (from a training checkpoint), an
  ExportedProgram (``scripts/export.py -o model.pt2``, CPU) or a TorchScript export (``.ts``: int8,
  and files of earlier versions), on a torch device.
- :class:`OnnxEmitter`: an ONNX export (``-o model.onnx``) in ONNX Runtime, on the CPU.
- :class:`StreamEmitter`: a streaming ONNX export (``-o model.stream.onnx --stream``): its
  ``stream_engine`` (:class:`~asr.inference.onnx_stream.OnnxStreamingModel`) streams, and whole
  recordings go through it too (log-probs of the model in chunked mode).

:func:`open_model` tells the files apart by their content (a TorchScript archive holds code, an
ExportedProgram archive an ``archive_format`` entry, a checkpoint only data; ONNX files by their
``.onnx`` suffix) and reads an export's metadata (what ``asr.inference.export`` writes under
:data:`METADATA_KEY`): the tokenizer and the frame arithmetic travel in the file. A file it cannot
use is a :class:`ModelFileError`, one line naming the file and what to do: a model another program
made, a file exported by another version of asr, a backend that is not installed.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.inference.onnx_stream import OnnxStreamingModel
from asr.model.acoustic import AcousticModel, subsampled_lengths
from asr.model.checkpoint import CheckpointError, load_checkpoint
from asr.model.features import frame_lengths
from asr.text import CharTokenizer

# The exported files' format, read here and written by asr.inference.export.
EXPORT_FORMAT = 1  # version of the files' metadata; other versions are refused with what to do
METADATA_KEY = "asr_export"  # TorchScript attribute, ONNX metadata key, ExportedProgram extra file (+ ".json")
ONNX_INPUTS, ONNX_OUTPUTS = ("waveforms", "lengths"), ("log_probs", "frames")
FORMATS = {".pt2": "exported_program", ".onnx": "onnx", ".ts": "torchscript", ".pt": "torchscript"}  # suffix -> kind
BACKENDS = ("torch", "onnxruntime")
KINDS = {"checkpoint": "torch", "exported_program": "torch", "torchscript": "torch", "onnx": "onnxruntime"}  # kind -> backend
_EXPORT_AGAIN = "export it again from its checkpoint: scripts/export.py CHECKPOINT -o {name}"


class ModelFileError(CheckpointError):
    """A model file that cannot be used as it is; the message names it and says what to do."""


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class FrameSpec:
    """How input samples become output frames, and how wide a frame is."""

    sample_rate: int
    hop_length: int  # samples per feature frame
    time_kernels: tuple[int, ...]  # the subsampling convolutions' time kernels ...
    time_strides: tuple[int, ...]  # ... and strides
    vocab_size: int
    min_samples: int = 0  # an export's shortest input: shorter batches are padded with zeros (exact: lengths say)

    @classmethod
    def of_model(cls, model: AcousticModel) -> FrameSpec:
        sub = model.subsampling
        return cls(model.feature_config.sample_rate, model.feature_config.hop_length, tuple(sub.time_kernels),
                   tuple(sub.time_strides), model.head.out_features)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> FrameSpec:
        return cls(int(meta["sample_rate"]), int(meta["hop_length"]), tuple(map(int, meta["time_kernels"])),
                   tuple(map(int, meta["time_strides"])), int(meta["vocab_size"]), int(meta.get("min_samples", 0)))

    @property
    def samples_per_frame(self) -> int:
        stride = 1
        for s in self.time_strides:
            stride *= s
        return self.hop_length * stride

    def output_frames(self, n_samples: int) -> int:
        frames = frame_lengths(torch.tensor([n_samples]), self.hop_length)
        return int(subsampled_lengths(frames, self.time_kernels, self.time_strides)[0])


class Emitter:
    """What :mod:`asr.inference.windows` and the Recognizer need (``asr.inference.windows.FrameModel``), and where it runs."""

    def __init__(self, spec: FrameSpec, device: torch.device, description: str) -> None:
        self.spec, self.device, self.description = spec, device, description
        self.sample_rate, self.vocab_size = spec.sample_rate, spec.vocab_size
        self.samples_per_frame = spec.samples_per_frame
        self.path: Path | None = None  # the file it was opened from (open_model)

    def output_frames(self, n_samples: int) -> int:
        return self.spec.output_frames(n_samples)

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def padded(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``waveforms`` with zeros appended up to the model's shortest input, if it is shorter."""
        missing = self.spec.min_samples - waveforms.shape[-1]
        return torch.nn.functional.pad(waveforms, (0, missing)) if missing > 0 else waveforms


class TorchEmitter(Emitter):
    """A model module (AcousticModel, ExportedProgram or TorchScript) on a torch device: CPU tensors
    in, CPU out. An exported module is already in inference mode (``eval()`` is not called on it)."""

    def __init__(self, module: torch.nn.Module, spec: FrameSpec, device: torch.device,
                 description: str = "PyTorch float32", exported: bool = False) -> None:
        super().__init__(spec, device, description)
        self.module = module.to(device) if exported else module.eval().to(device)

    @classmethod
    def of_model(cls, model: AcousticModel, device: str | torch.device | None = "auto") -> TorchEmitter:
        return cls(model, FrameSpec.of_model(model), pick_device(device))

    @torch.inference_mode()
    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, out_lengths = self.module(self.padded(waveforms).to(self.device), lengths.to(self.device))
        return log_probs.float().cpu(), out_lengths.cpu()


class OnnxEmitter(Emitter):
    """An ONNX Runtime session of an asr ONNX export, on the CPU."""

    def __init__(self, session: Any, spec: FrameSpec, description: str = "ONNX Runtime float32") -> None:
        super().__init__(spec, torch.device("cpu"), description)
        self.session = session

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feed = {"waveforms": self.padded(waveforms).float().contiguous().numpy(), "lengths": lengths.long().numpy()}
        log_probs, frames = self.session.run(list(ONNX_OUTPUTS), feed)
        return torch.from_numpy(log_probs), torch.from_numpy(frames)


class StreamEmitter(Emitter):
    """A streaming ONNX export: ``stream_engine`` for streams; a batch of recordings is streamed whole."""

    def __init__(self, engine: OnnxStreamingModel, spec: FrameSpec, description: str) -> None:
        super().__init__(spec, torch.device("cpu"), description)
        self.stream_engine = engine

    def __call__(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        engine, states = self.stream_engine, []
        for wave, n in zip(waveforms, lengths.tolist()):
            states.append(engine.new_state())
            engine.accept(states[-1], wave[:n].float())
            engine.finish(states[-1])
        outputs = [out.log_probs for out in engine.step(states)]  # every window of every recording
        frames = torch.tensor([len(lp) for lp in outputs])
        log_probs = torch.zeros(len(outputs), int(frames.max()) if len(outputs) else 0, self.vocab_size)
        for row, lp in enumerate(outputs):
            log_probs[row, : len(lp)] = lp
        return log_probs, frames


# --- files ----------------------------------------------------------------------------------------


def file_kind(path: str | os.PathLike) -> str:
    """"exported_program", "torchscript", "onnx" or "checkpoint" (anything else:
    asr.model.checkpoint says what is wrong with it)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "checkpoint"
        if any(n.endswith("/archive_format") for n in names):  # torch.export.save's archive
            return "exported_program"
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):  # torch.save writes data.pkl only
            return "torchscript"
    return "checkpoint"


def open_model(path: str | os.PathLike, backend: str | None = None, device: str | torch.device | None = "auto",
               threads: int | None = None) -> tuple[Emitter, CharTokenizer]:
    """A training checkpoint or an export (ExportedProgram, ONNX, TorchScript) -> (Emitter, tokenizer).

    ``backend``: "torch" or "onnxruntime", None for the file's own (checkpoints, ExportedPrograms and
    TorchScript run in PyTorch, ONNX files in ONNX Runtime). ``device``: for PyTorch ("auto": CUDA
    when available; exports run on the CPU). ``threads``: CPU threads (ONNX Runtime's intra-op threads;
    for PyTorch ``torch.set_num_threads``, which is process-wide). Raises CheckpointError (one line).
    """
    path = Path(path)
    if backend not in (None, *BACKENDS):
        raise ModelFileError(f"backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise CheckpointError(f"{path}: {'model file' if path.suffix.lower() in FORMATS else 'checkpoint'} not found")
    kind = file_kind(path)
    if backend and backend != KINDS[kind]:
        what = {"checkpoint": "a training checkpoint", "exported_program": "an ExportedProgram (.pt2)",
                "torchscript": "a TorchScript model", "onnx": "an ONNX model"}[kind]
        fix = (f"export an ONNX file for it: scripts/export.py {path.name if kind == 'checkpoint' else 'CHECKPOINT'} "
               "-o model.onnx" if backend == "onnxruntime" else "use --backend onnxruntime, or the .pt2 "
               "export or checkpoint of the same model")
        raise ModelFileError(f"{path}: {what}, which runs with --backend {KINDS[kind]}, not {backend}; {fix}")
    if threads is not None and kind != "onnx":
        torch.set_num_threads(threads)
    if kind == "onnx":
        emitter, tokenizer = _open_onnx(path, device, threads)
    elif kind == "torchscript":
        emitter, tokenizer = _open_torchscript(path, device)
    elif kind == "exported_program":
        emitter, tokenizer = _open_exported_program(path, device)
    else:
        loaded = load_checkpoint(path)
        emitter, tokenizer = TorchEmitter.of_model(loaded.model, device), loaded.tokenizer
    emitter.path = path
    return emitter, tokenizer


def _open_torchscript(path: Path, device: str | torch.device | None) -> tuple[Emitter, CharTokenizer]:
    try:
        # .ts files are int8 (the one form torch.export cannot write: asr.inference.export) or float32
        # files of asr 0.1; torch.jit.load's DeprecationWarning is for the author, not the user.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch raises RuntimeError (and others) with long messages
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if "quantized" in str(err):
            raise ModelFileError(f"{path}: an int8 TorchScript model, and this PyTorch cannot run its quantized "
                                 f"ops ({first}); use the float32 export (scripts/export.py without --quantize)") from None
        raise ModelFileError(f"{path}: a damaged TorchScript file ({first}); {_EXPORT_AGAIN.format(name=path.name)}") from None
    raw = getattr(module, METADATA_KEY, None) if hasattr(module, METADATA_KEY) else None
    if raw is None:
        if hasattr(module, "symbols") and hasattr(module, "sample_rate"):
            raise ModelFileError(f"{path}: a TorchScript model exported by an older asr (no {METADATA_KEY} entry); "
                                 + _EXPORT_AGAIN.format(name=path.name))
        raise ModelFileError(f"{path}: a TorchScript model (scripts/export.py writes these), but not one asr "
                             f"exported (no {METADATA_KEY} entry); export a checkpoint: scripts/export.py "
                             f"CHECKPOINT -o {path.name}")
    meta, spec, tokenizer = _read_metadata(path, raw)
    target = pick_device(device)
    if meta.get("quantize"):
        if device not in (None, "auto") and target.type != "cpu":
            raise ModelFileError(f"{path}: an int8 model, which runs on the CPU only; use --device cpu "
                                 "(or a float32 export on the GPU)")
        target = torch.device("cpu")
    return TorchEmitter(module, spec, target, _describe(meta)), tokenizer


def _open_exported_program(path: Path, device: str | torch.device | None) -> tuple[Emitter, CharTokenizer]:
    if device not in (None, "auto") and pick_device(device).type != "cpu":
        raise ModelFileError(f"{path}: an ExportedProgram, exported for the CPU; use --device cpu "
                             "(or the checkpoint on the GPU)")
    extra = {METADATA_KEY + ".json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on reading weights from the archive
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as err:  # torch raises RuntimeError, KeyError and others for damaged archives
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelFileError(f"{path}: a damaged ExportedProgram ({first}); {_EXPORT_AGAIN.format(name=path.name)}") from None
    if not extra[METADATA_KEY + ".json"]:
        raise ModelFileError(f"{path}: an ExportedProgram asr did not export (no {METADATA_KEY}.json in it); "
                             f"export a checkpoint: scripts/export.py CHECKPOINT -o {path.name}")
    meta, spec, tokenizer = _read_metadata(path, extra[METADATA_KEY + ".json"])
    return TorchEmitter(program.module(), spec, torch.device("cpu"), _describe(meta), exported=True), tokenizer


def _open_onnx(path: Path, device: str | torch.device | None, threads: int | None) -> tuple[Emitter, CharTokenizer]:
    if device not in (None, "auto") and pick_device(device).type != "cpu":
        raise ModelFileError(f"{path}: ONNX models run on the CPU here (ONNX Runtime's CPU provider); use --device cpu")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelFileError(f"{path}: an ONNX model needs ONNX Runtime, which is not installed: "
                             "pip install 'asr[onnx]' (or decode the checkpoint or its .pt2 export)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelFileError(f"{path}: not a readable ONNX model ({first})") from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    inputs = tuple(i.name for i in session.get_inputs())
    outputs = tuple(o.name for o in session.get_outputs())
    streaming = raw is not None and _is_streaming(raw)  # asr's streaming export: its own inputs (checked below)
    if raw is None or not streaming and (inputs != ONNX_INPUTS or outputs != ONNX_OUTPUTS):
        raise ModelFileError(f"{path}: an ONNX model asr did not export (no {METADATA_KEY} metadata; inputs "
                             f"{', '.join(inputs) or 'none'}, not {', '.join(ONNX_INPUTS)}); export the checkpoint "
                             f"of the model you want: scripts/export.py CHECKPOINT -o {path.name}")
    meta, spec, tokenizer = _read_metadata(path, raw)
    if streaming:
        return _stream_emitter(path, session, meta, spec, inputs, outputs), tokenizer
    vocab = session.get_outputs()[0].shape[-1]
    if isinstance(vocab, int) and vocab != spec.vocab_size:
        raise ModelFileError(f"{path}: the model emits {vocab} symbols but its metadata lists {spec.vocab_size}: "
                             f"the file was altered; {_EXPORT_AGAIN.format(name=path.name)}")
    return OnnxEmitter(session, spec, _describe(meta)), tokenizer


def _is_streaming(raw: str) -> bool:
    """Whether ``asr_export`` metadata is a streaming export's (``export.py --stream``)."""
    try:
        return isinstance(json.loads(raw).get("stream"), dict)
    except (ValueError, AttributeError):
        return False


def _stream_emitter(path: Path, session: Any, meta: dict[str, Any], spec: FrameSpec, inputs: tuple[str, ...],
                    outputs: tuple[str, ...]) -> StreamEmitter:
    again = _EXPORT_AGAIN.format(name=path.name) + " --stream"
    try:
        engine = OnnxStreamingModel(session, meta)
    except (ValueError, TypeError, KeyError) as err:
        raise ModelFileError(f"{path}: damaged {METADATA_KEY} stream metadata ({type(err).__name__}: {err}); "
                             f"{again}") from None
    if list(inputs) != engine.input_names or list(outputs) != engine.output_names:
        raise ModelFileError(f"{path}: the streaming graph's inputs ({', '.join(inputs)}) are not those its metadata "
                             f"lists ({', '.join(engine.input_names)}): the file was altered; {again}")
    return StreamEmitter(engine, spec, _describe(meta) + " streaming")


def _read_metadata(path: Path, raw: str) -> tuple[dict[str, Any], FrameSpec, CharTokenizer]:
    again = _EXPORT_AGAIN.format(name=path.name)
    try:
        meta = json.loads(raw)
        version = int(meta["format"])
    except (ValueError, TypeError, KeyError):
        raise ModelFileError(f"{path}: unreadable {METADATA_KEY} metadata; {again}") from None
    if version < EXPORT_FORMAT:
        raise ModelFileError(f"{path}: exported by an older asr (export format {version}; this asr reads "
                             f"{EXPORT_FORMAT}); {again}")
    if version > EXPORT_FORMAT:
        raise ModelFileError(f"{path}: exported by a newer asr (export format {version}; this asr reads "
                             f"{EXPORT_FORMAT}); upgrade asr to load it")
    try:
        spec = FrameSpec.from_metadata(meta)
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    except (ValueError, TypeError, KeyError) as err:
        raise ModelFileError(f"{path}: damaged {METADATA_KEY} metadata ({type(err).__name__}: {err}); {again}") from None
    if len(tokenizer) != spec.vocab_size:
        raise ModelFileError(f"{path}: damaged {METADATA_KEY} metadata ({len(tokenizer)} symbols for an output of "
                             f"{spec.vocab_size}); {again}")
    return meta, spec, tokenizer


def _describe(meta: dict[str, Any]) -> str:
    runtime = {"onnx": "ONNX Runtime", "exported_program": "ExportedProgram"}.get(meta.get("backend"), "TorchScript")
    return f"{runtime} {meta.get('quantize') or 'float32'}"
