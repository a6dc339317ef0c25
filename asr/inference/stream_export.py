"""Streaming export: a checkpoint -> one checked ONNX file that streams in ONNX Runtime (``export.py --stream``).

In: a training checkpoint and a latency (``chunk``, ``right_context`` seconds; default the model's own
``model.chunk``, ``model.right_context``). Out: an ONNX file (opset ONNX_OPSET, float32 or int8) whose graph
is one streaming window for a batch of streams, the forward LSTM states in and out
(:mod:`asr.inference.stream_graph` lists the inputs and outputs), and whose ``asr_export`` metadata is the
other exports' (tokenizer, frame arithmetic) plus ``stream``: the window arithmetic
(:class:`~asr.inference.onnx_stream.StreamGeometry`), the normalization, the state sizes, the input and
output names, the latency. :mod:`asr.inference.onnx_stream` runs it with the file alone:

    recognizer = asr.load("model.stream.onnx")     # asr.inference.emitters reads the metadata
    stream = recognizer.stream()                   # then accept(samples) / finish(), as with a checkpoint

The file is written only if it reproduces PyTorch: the check audio (:func:`~asr.inference.export.check_inputs`)
is streamed in pieces of random sizes, all streams stepped together, through the file in ONNX Runtime and
through :class:`~asr.model.streaming.StreamingModel` (normalize=global or none: the same numbers); for
normalize=utterance, whose running estimate is updated per window here and per step there, through the
same step module in PyTorch. The difference is measured as for the other exports (EXPORT_TOLERANCE,
INT8_TOLERANCE for int8: ONNX Runtime's dynamic quantization of the LSTMs, states included, and the
output layer).
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.files import atomic_write
from asr.inference.emitters import open_model
from asr.inference.export import (EXPORT_TOLERANCE, INT8_TOLERANCE, ONNX_OPSET, QUANTIZATIONS, ExportError,
                                  _need_onnx, _quiet_tracing, check_inputs, difference,
                                  export_metadata, inference_model, onnx_file_bytes)
from asr.inference.onnx_stream import OnnxStreamingModel
from asr.inference.stream_graph import STREAM_TRANSLATIONS, StreamStep
from asr.model.acoustic import AcousticModel
from asr.model.checkpoint import load_checkpoint
from asr.model.streaming import StreamingModel
from asr.text import CharTokenizer

CHECK_PIECES = (1, 160, 1000, 4000, 8000)  # the check feeds pieces of sizes drawn from these (samples) ...
CHECK_PIECE_SEED = 0  # ... in this order
TRACE_BATCH = 2  # streams in the tracing example (the batch stays symbolic)


@dataclass
class StreamExport:
    """What :func:`export_stream` wrote: its check, and the latency it streams at."""

    difference: float
    tolerance: float
    chunk: float  # seconds final per window
    right_context: float  # seconds of look-ahead
    latency: float  # seconds from a chunk's first audio to its log-probs


def streaming_model(model: AcousticModel, chunk: float | None = None,
                    right_context: float | None = None) -> AcousticModel:
    """An inference copy of ``model`` (float32 CPU, split stack) reading chunks of ``chunk`` seconds with
    ``right_context`` after each (default: the model's own); ExportError for a whole-utterance model without them."""
    out = inference_model(model)
    if chunk is None and right_context is not None:
        raise ExportError("a right context needs its chunk (seconds): give both, or neither for the model's own")
    if chunk is not None:
        out.set_latency(chunk, right_context or 0.0)
    elif out.chunk_frames == 0:
        raise ExportError("this model reads whole utterances (it was trained with model.chunk=0): give its "
                          "streaming latency in seconds, e.g. --chunk 0.4 --right-context 0.4")
    return out


def stream_metadata(step: StreamStep, model: AcousticModel, tokenizer: CharTokenizer,
                    quantize: str | None) -> dict[str, Any]:
    """What a streaming export says about itself: the other exports' metadata and ``stream``."""
    g, rate = step.geometry, model.output_frame_rate
    meta = export_metadata(model, tokenizer, "onnx", quantize)
    meta["min_samples"] = 0  # any piece size
    meta["stream"] = {"geometry": g.to_dict(), "normalize": step.normalize, "layers": step.rnn.num_layers,
                      "hidden": step.rnn.hidden_size, "n_mels": model.feature_config.n_mels,
                      "inputs": step.input_names, "outputs": step.output_names, "chunk_seconds": g.chunk / rate,
                      "right_context_seconds": g.right / rate, "latency": g.latency}
    return meta


def stream_onnx_bytes(model: AcousticModel, tokenizer: CharTokenizer, quantize: str | None = None) -> bytes:
    """The streaming ONNX file of a chunked inference model (:func:`streaming_model`), as bytes."""
    _need_onnx(quantize)

    step = StreamStep(model)
    batch = torch.export.Dim("batch", min=1)
    shapes = {name: {1 if name in ("h", "c") else 0: batch} for name in step.input_names}
    with _quiet_tracing():
        program = torch.onnx.export(step, step.example_inputs(TRACE_BATCH), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=step.input_names, output_names=step.output_names,
                                    dynamic_shapes=shapes, custom_translation_table=STREAM_TRANSLATIONS)
    return onnx_file_bytes(program.model_proto, quantize, stream_metadata(step, model, tokenizer, quantize),
                           "BiLSTM-CTC acoustic model, one streaming window per call, LSTM states in and out "
                           "(asr.inference.stream_graph)")


class TorchStepSession:
    """A :class:`StreamStep` in PyTorch behind ONNX Runtime's ``run``: the reference for normalize=utterance."""

    def __init__(self, step: StreamStep) -> None:
        self.step = step

    @torch.inference_mode()
    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self.step(*(torch.from_numpy(feeds[name]) for name in self.step.input_names))
        return [out.numpy() for out in outputs]


def stream_in_pieces(engine: Any, audio: list[torch.Tensor], seed: int = CHECK_PIECE_SEED) -> list[torch.Tensor]:
    """Each recording fed to its own stream of ``engine`` (StreamingModel or OnnxStreamingModel) in pieces of
    sizes drawn from CHECK_PIECES, every stream stepped after each round -> each stream's log-probs."""
    rng = random.Random(seed)
    states = [engine.new_state() for _ in audio]
    got: list[list[torch.Tensor]] = [[] for _ in audio]
    position = [0] * len(audio)
    while not all(state.done for state in states):
        for i, (x, state) in enumerate(zip(audio, states)):
            if position[i] < x.numel():
                piece = rng.choice(CHECK_PIECES)
                engine.accept(state, x[position[i]: position[i] + piece])
                position[i] += piece
            elif not state.finished:
                engine.finish(state)
        for i, out in enumerate(engine.step(states)):
            got[i].append(out.log_probs)
    return [torch.cat(parts) for parts in got]


def export_stream(checkpoint: str | os.PathLike, output: str | os.PathLike, quantize: str | None = None,
                  tolerance: float | None = None, chunk: float | None = None, right_context: float | None = None,
                  threads: int | None = None) -> StreamExport:
    """Export a checkpoint's streaming step to ``output`` (.onnx), check it (see the module docstring),
    write it atomically. ExportError (nothing written) for a difference above ``tolerance`` (default
    EXPORT_TOLERANCE, INT8_TOLERANCE for int8), a whole-utterance model without a chunk, another suffix."""
    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"quantize={quantize!r}: must be one of {', '.join(QUANTIZATIONS)} (or none)")
    if Path(output).suffix.lower() != ".onnx":
        raise ExportError(f"{output}: a streaming export is an ONNX file: name it *.onnx (e.g. model.stream.onnx)")
    try:
        _need_onnx(quantize)
    except ExportError as err:
        raise ExportError(f"{output}: {err}") from None
    tolerance = tolerance if tolerance is not None else INT8_TOLERANCE if quantize else EXPORT_TOLERANCE
    loaded = load_checkpoint(checkpoint)
    try:
        model = streaming_model(loaded.model, chunk, right_context)
    except ExportError as err:
        raise ExportError(f"{checkpoint}: {err}") from None
    data = stream_onnx_bytes(model, loaded.tokenizer, quantize)
    waves, lengths = check_inputs(model.feature_config.sample_rate)
    audio = [w[:n] for w, n in zip(waves, lengths.tolist())]
    with tempfile.TemporaryDirectory() as tmp:  # checked as it will be loaded: from the file
        path = Path(tmp) / Path(output).name
        path.write_bytes(data)
        emitter, _ = open_model(path, device="cpu", threads=threads)
        got = torch.cat(stream_in_pieces(emitter.stream_engine, audio))
        del emitter
    if model.feature_config.normalize == "utterance":
        step = StreamStep(model)
        reference = OnnxStreamingModel(TorchStepSession(step), stream_metadata(step, model, loaded.tokenizer, quantize))
    else:
        reference = StreamingModel(model)
    with torch.inference_mode():
        expected = torch.cat(stream_in_pieces(reference, audio))
    frames = torch.tensor([len(expected)])
    diff = difference((expected[None], frames), (got[None], torch.tensor([len(got)])), quantize is not None)
    if not diff <= tolerance:
        kind = "mean probability distance" if quantize else "largest log-prob difference"
        raise ExportError(f"{checkpoint}: the streaming ONNX {quantize or 'float32'} export's {kind} from the model "
                          f"streamed in PyTorch is {diff:.2e} (> {tolerance:g}): a broken export; nothing written")
    with atomic_write(output, "wb") as f:
        f.write(data)
    rate = model.output_frame_rate
    return StreamExport(diff, tolerance, model.chunk_frames / rate, model.right_frames / rate,
                        StreamingModel(model).latency)
