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
               "  then: m = torch.export.load('model.pt2').module(); log_probs, frames = m(waveforms, lengths)\n"
               "  or:   decode.py model.int8.onnx talk.flac",
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
    return run(parser.prog, _export, parser.parse_args(argv))


def _export(args: argparse.Namespace) -> int:
    from asr.inference.export import FORMAT_NAMES, ExportError, export, export_format

    try:
        diff, tolerance = export(args.checkpoint, args.output, args.quantize, args.tolerance)
    except ExportError as err:
        raise Fail(str(err)) from None
    kind = "mean probability distance (total variation)" if args.quantize else "largest log-prob difference"
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {FORMAT_NAMES[export_format(args.output, args.quantize)]} {args.quantize or 'float32'}, "
          f"{size:.1f} MB; {kind} from PyTorch float32 {diff:.1e} (tolerance {tolerance:g})")
    return 0
