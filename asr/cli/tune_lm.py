"""``tune_lm.py`` / ``asr-tune-lm``: a model, a dev set and an LM -> LM weight and word bonus, stored with it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr.cli.common import (
    Fail,
    add_decoding_args,
    add_window_args,
    build_recognizer,
    decode_options,
    error,
    program,
    run,
    setup_logging,
)
from asr.decoding.options import DecodeOptions, options_path, save_options
from asr.inference.recognizer import DEFAULT_BATCH_SECONDS
from asr.report import format_table

PROG = program("tune_lm.py")  # asr-tune-lm when run as that command

def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    from asr.inference.tuning import DEFAULT_EXTENSIONS, DEFAULT_LM_WEIGHTS, DEFAULT_WORD_SCORES

    parser = argparse.ArgumentParser(
        prog=PROG, description="Tune the LM weight and word bonus of beam search on a dev set and store "
                                       "the best beside the checkpoint (<checkpoint>.decoding.json), where "
                                       "asr.load() and decode.py/evaluate.py pick them up.",
        epilog="example:\n  tune_lm.py runs/synthetic/latest/checkpoints/last.ckpt data/synthetic/dev --lm lm.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("dev", help="dev set: a manifest .jsonl, a LibriSpeech-layout folder, or audio + .txt files")
    add_decoding_args(parser, tuning=True)
    parser.add_argument("--lm-weights", type=float, nargs="+", default=list(DEFAULT_LM_WEIGHTS),
                        help="LM weights tried (default %(default)s)")
    parser.add_argument("--word-scores", type=float, nargs="+", default=list(DEFAULT_WORD_SCORES),
                        help="word bonuses tried (default %(default)s)")
    parser.add_argument("--extend", type=int, default=DEFAULT_EXTENSIONS, metavar="N",
                        help="while the best point is on the grid's edge, grow the grid past it around that "
                             "point, at most N times (default %(default)s; 0: the grid as given)")
    parser.add_argument("--cache", help="log-probs cache (default: eval/<dev>.logprobs.pt beside the checkpoint)")
    parser.add_argument("--save", help="where to store the chosen options (default: <checkpoint>.decoding.json)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS)
    add_window_args(parser)
    return run(parser.prog, _tune, parser.parse_args(argv))


def _tune(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from asr.inference.evaluate import load_test_set
    from asr.inference.tuning import Tuning, dev_set, grid_points, grid_search, score

    if args.extend < 0:
        raise Fail(f"--extend {args.extend}: must be 0 (the grid as given) or more")
    base = decode_options(args).replace(decoder="beam")
    recognizer = build_recognizer(args, DecodeOptions(word_pause=base.word_pause))
    name = Path(args.dev).stem if Path(args.dev).is_file() else Path(args.dev).name
    cache = args.cache or Path(args.checkpoint).resolve().parent / "eval" / f"{name}.logprobs.pt"
    dev = dev_set(recognizer, load_test_set(args.dev), args.checkpoint, cache, args.batch_seconds)
    for failure in dev.failed:
        error(PROG, f"{failure} (left out)")
    if not dev.emissions:
        raise Fail(f"{args.dev}: no readable utterance to tune on")
    greedy_wer, greedy_errors = score(recognizer, dev, recognizer.decoder)
    print(f"{name}: {len(dev.emissions)} utterances, greedy WER {100 * greedy_wer:.2f}%", file=sys.stderr)
    tuning = Tuning(greedy_wer, greedy_errors, grid_search(
        recognizer, dev, base, args.lm_weights, args.word_scores, extend=args.extend, on_trial=lambda t: print(
            f"  lm_weight {t.lm_weight:g}, word_score {t.word_score:g}: WER {100 * t.wer:.2f}%", file=sys.stderr)))
    grid = set(grid_points(args.lm_weights, args.word_scores))
    grown = [t for t in tuning.trials if (t.lm_weight, t.word_score) not in grid]
    if grown:
        print(f"the best point was on the grid's edge: {len(grown)} points past it tried "
              f"(lm_weight up to {max(t.lm_weight for t in tuning.trials):g}, word_score "
              f"{min(t.word_score for t in tuning.trials):g} to {max(t.word_score for t in tuning.trials):g})",
              file=sys.stderr)
    best, greedy = tuning.best, f"greedy {100 * tuning.greedy_wer:.2f}%"
    rows = [[t.lm_weight, t.word_score, 100 * t.wer] for t in sorted(tuning.trials, key=lambda t: t.errors)[:10]]
    print(format_table(["lm_weight", "word_score", "WER %"], [["greedy", "", 100 * tuning.greedy_wer], *rows]))
    point = f"lm_weight {best.lm_weight:g}, word_score {best.word_score:g}: WER {100 * best.wer:.2f}%"
    save = Path(args.save) if args.save else options_path(args.checkpoint)
    if not tuning.beats_greedy:
        kept = f"; {save} is left as it was" if save.exists() else ""
        print(f"no point beats greedy decoding (best: {point}, {greedy}): nothing stored, decode greedy{kept}")
        return 0
    chosen = base.replace(lm_weight=best.lm_weight, word_score=best.word_score)
    saved = save_options(chosen, save, dev_set=str(Path(args.dev).resolve()), utterances=len(dev.emissions),
                         greedy_wer=tuning.greedy_wer, wer=best.wer, grid=[asdict(t) for t in tuning.trials])
    print(f"best: {point} ({greedy}); stored in {saved}")
    return 0
