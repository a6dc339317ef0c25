"""``export.py`` / ``asr-export``: a checkpoint -> one checked file that transcribes without it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from asr.cli.common import Fail, program, run, setup_logging

PROG = program("export.py")  # asr-export when run as that command


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    from asr.inference.export import EXPORT_TOLERANCE, INT8_TOLERANCE, ONNX_OPSET, QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Export a checkpoint's acoustic model, feature extraction included, to an "
                               "ExportedProgram (torch.export: runs with torch alone) or ONNX (ONNX Runtime, opset "
                               f"{ONNX_OPSET}), float32 or int8 (int8 for PyTorch: TorchScript), checked against "
                               "PyTorch. The file carries the tokenizer: decode.py and asr.load() take it in place "
                               "of the checkpoint.",
        epilog="examples:\n  export.py model.ckpt -o model.pt2\n  export.py model.ckpt -o model.int8.onnx --quantize int8\n"
               "  export.py model.ckpt -o model.stream.onnx --stream --chunk 0.4 --right-context 0.4\n"
               "  then: m = torch.export.load('model.pt2').module(); log_probs, frames = m(waveforms, lengths)\n"
               "  or:   decode.py model.int8.onnx talk.flac\n"
               "  or:   stream = asr.load('model.stream.onnx').stream(); stream.accept(samples); stream.finish()",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("-o", "--output", required=True, help="the file to write: .pt2 (ExportedProgram), .onnx (ONNX), "
                                                                ".ts (TorchScript, with --quantize int8)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="dynamic int8 quantization of the LSTMs and the "
                                                                   "output layer (default: float32)")
    parser.add_argument("--tolerance", type=float,
                        help=f"float32: largest log-prob difference accepted (default {EXPORT_TOLERANCE:g}); int8: "
                             "largest mean total-variation distance between the per-frame distributions "
                             f"(default {INT8_TOLERANCE:g})")
    parser.add_argument("--stream", action="store_true",
                        help="write an ONNX file that streams (asr.load(FILE).stream()): one window of many streams "
                             "per call, the LSTM states in and out, checked against the model streamed in PyTorch")
    parser.add_argument("--chunk", type=float, metavar="S",
                        help="with --stream: seconds final per window (default: the model's model.chunk; needed "
                             "for a model trained on whole utterances)")
    parser.add_argument("--right-context", type=float, metavar="S",
                        help="with --stream: seconds of look-ahead after each chunk (default: the model's "
                             "model.right_context when --chunk is not given, else 0)")
    return run(parser.prog, _export, parser.parse_args(argv))


def _export(args: argparse.Namespace) -> int:
    from asr.inference.export import FORMAT_NAMES, ExportError, export, export_format

    if args.stream:
        return _export_stream(args)
    if args.chunk is not None or args.right_context is not None:
        raise Fail("--chunk and --right-context are for a streaming export: add --stream")
    try:
        diff, tolerance = export(args.checkpoint, args.output, args.quantize, args.tolerance)
    except ExportError as err:
        raise Fail(str(err)) from None
    kind = "mean probability distance (total variation)" if args.quantize else "largest log-prob difference"
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {FORMAT_NAMES[export_format(args.output, args.quantize)]} {args.quantize or 'float32'}, "
          f"{size:.1f} MB; {kind} from PyTorch float32 {diff:.1e} (tolerance {tolerance:g})")
    return 0


def _export_stream(args: argparse.Namespace) -> int:
    from asr.inference.export import ExportError
    from asr.inference.stream_export import export_stream

    if args.chunk is None and args.right_context is not None:
        raise Fail("--right-context needs --chunk (the model's own latency comes as a pair)")
    try:
        done = export_stream(args.checkpoint, args.output, args.quantize, args.tolerance, args.chunk,
                             args.right_context)
    except ExportError as err:
        raise Fail(str(err)) from None
    kind = "mean probability distance (total variation)" if args.quantize else "largest log-prob difference"
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: streaming ONNX {args.quantize or 'float32'}, {size:.1f} MB; chunk {done.chunk:.2f} s, "
          f"right context {done.right_context:.2f} s, latency {done.latency:.2f} s; {kind} from PyTorch streaming "
          f"{done.difference:.1e} (tolerance {done.tolerance:g})")
    return 0
