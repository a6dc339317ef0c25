"""What the command lines share: one-line errors and exit statuses, the decoding, model and window flags.

Each command is a module of this package with ``main(argv) -> exit status`` (``scripts/<command>.py``
and the ``asr-<command>`` entry points call it): it parses its arguments, calls the library and
prints one line per problem on stderr (``<program>: error: <what>``), never a traceback for bad
input. Exit status: 0 success, 1 some files or test sets could not be read (the others were
processed), 2 bad arguments, a bad checkpoint, or no input readable (nothing done, nothing written).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from asr.data.manifest import ManifestError
from asr.decoding.arpa import LMError
from asr.decoding.options import DECODERS, LM_UNITS, DecodeOptions, DecodeOptionsError, load_options, stored_options
from asr.inference.recognizer import Recognizer
from asr.inference.windows import WindowConfig
from asr.model.checkpoint import CheckpointError

USER_ERRORS = (CheckpointError, DecodeOptionsError, LMError, ManifestError)


def program(script: str) -> str:
    """The name to print in messages: the ``asr-<command>`` the user typed, else the script's name."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return called if called.startswith("asr-") else script


class Fail(Exception):
    """A user error already worded for one line on stderr; the main returns ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def run(prog: str, main, args: argparse.Namespace) -> int:
    """Call ``main(args)``; a user error becomes one line on stderr and exit status 2."""
    try:
        return main(args)
    except Fail as err:
        error(prog, str(err))
        return err.status
    except USER_ERRORS as err:
        error(prog, str(err))
        return 2


# --- decoding options, shared by decode, evaluate and tune_lm -------------------------------------


def add_decoding_args(parser: argparse.ArgumentParser, several: bool = False, tuning: bool = False) -> None:
    """Decoding flags; ``several``: --decoder takes a list (evaluate); ``tuning``: the LM is required
    and the weights are what is searched."""
    d = DecodeOptions()
    g = parser.add_argument_group("decoding (default: the options tune_lm.py stored beside the checkpoint, else greedy)")
    if several:
        g.add_argument("--decoder", choices=DECODERS, nargs="+",
                       help="decoders side by side (default: greedy, and beam when --lm or tuned options say so)")
    elif not tuning:
        g.add_argument("--decoder", choices=DECODERS, help="greedy, or beam search (implied by --lm)")
    g.add_argument("--lm", required=tuning, help="KenLM n-gram: ARPA (.arpa or .arpa.gz) or binary")
    g.add_argument("--lexicon", help="words the search may output (one per line, or 'word t o k e n s'); "
                                     "default: the LM's words")
    g.add_argument("--lm-unit", choices=LM_UNITS, help="what the LM's tokens are (default: auto, read from the ARPA)")
    g.add_argument("--beam-size", type=int, help=f"hypotheses kept per frame (default {d.beam_size})")
    g.add_argument("--beam-size-token", type=int, help="symbols tried per frame (default: all)")
    g.add_argument("--beam-threshold", type=float, help=f"prune hypotheses this far below the best (default {d.beam_threshold:g})")
    if not tuning:
        g.add_argument("--lm-weight", type=float, help=f"LM weight, alpha (default {d.lm_weight:g})")
        g.add_argument("--word-score", type=float, help=f"bonus per word, beta (default {d.word_score:g})")
    g.add_argument("--word-pause", type=float, help="seconds of pause that end a word where the model emitted "
                                                    f"no space (default {d.word_pause:g}; 0: off)")
    g.add_argument("--log-add", action="store_true", default=None,
                   help="beam: merge hypotheses by adding their probabilities (default: keep the best)")
    if not tuning:
        g.add_argument("--options", help="a JSON or YAML file of decoding options (asr/conf/decode/*.yaml, "
                                         "or a .decoding.json written by tune_lm.py)")
        g.add_argument("--no-tuned", action="store_true", help="ignore the options stored beside the checkpoint")


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """Options from, in rising priority: defaults, the checkpoint's stored ones, --options, flags."""
    base = DecodeOptions()
    if not getattr(args, "no_tuned", True):
        base = stored_options(args.checkpoint) or base
    if getattr(args, "options", None):
        base = load_options(args.options)
    flags = {k: getattr(args, k, None) for k in ("decoder", "lm", "lexicon", "lm_unit", "beam_size", "beam_size_token",
                                                  "beam_threshold", "lm_weight", "word_score", "word_pause", "log_add")}
    if flags["lm"] or flags["lexicon"]:
        flags["decoder"] = flags["decoder"] or "beam"
    elif flags["decoder"] == "greedy":  # greedy on a checkpoint tuned for beam: its LM is not wanted
        base = dataclasses.replace(base, decoder="greedy", lm=None, lexicon=None)
    return base.replace(**flags)


MODEL_HELP = "a .ckpt written by scripts/train.py, or a .ts or .onnx export of one (scripts/export.py)"


def add_model_args(parser: argparse.ArgumentParser) -> None:
    from asr.inference.emitters import BACKENDS

    g = parser.add_argument_group("model")
    g.add_argument("--backend", choices=BACKENDS, help="torch: checkpoints and TorchScript files; onnxruntime: "
                                                      "ONNX files (default: the file's own)")
    g.add_argument("--threads", type=int, help="CPU threads for the model (default: PyTorch's and ONNX Runtime's "
                                               "own, one per core)")


def add_window_args(parser: argparse.ArgumentParser) -> None:
    d = WindowConfig()
    g = parser.add_argument_group("long recordings")
    g.add_argument("--chunk-seconds", type=float, default=d.chunk,
                   help="output kept per window of a long recording (default %(default)s)")
    g.add_argument("--context-seconds", type=float, default=d.context,
                   help="audio seen on each side of a window's kept part (default %(default)s)")
    g.add_argument("--pause-seconds", type=float, default=d.pause,
                   help="a quiet stretch this long is cut, the speech between cuts recognised alone "
                        "(default %(default)s; 0: fixed windows only)")


def build_recognizer(args: argparse.Namespace, options: DecodeOptions) -> Recognizer:
    import torch

    try:
        windows = WindowConfig(args.chunk_seconds, args.context_seconds, pause=args.pause_seconds)
    except ValueError as err:
        raise Fail(f"--chunk-seconds/--context-seconds/--pause-seconds: {err}") from None
    try:
        device = torch.device("cpu" if args.device == "auto" else args.device)
    except RuntimeError:
        raise Fail(f"--device {args.device}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise Fail(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise Fail(f"--threads {threads}: must be at least 1")
    return Recognizer.load(args.checkpoint, args.device, options, windows, getattr(args, "backend", None), threads)


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
