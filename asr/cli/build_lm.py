"""``build_lm.py`` / ``asr-build-lm``: text or manifests -> a Kneser-Ney ARPA file; a space-separated ARPA -> tabs."""

from __future__ import annotations

import argparse
from typing import Sequence

from asr.cli.common import Fail, program, run, setup_logging
from asr.decoding.ngram import UNITS

PROG = program("build_lm.py")  # asr-build-lm when run as that command

def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build a Kneser-Ney n-gram LM (tab-separated ARPA, as KenLM reads it) "
                                        "from text, or fix an ARPA file whose fields are separated by spaces.",
        epilog="examples:\n  build_lm.py data/synthetic/train -o lm/words3.arpa\n"
               "  build_lm.py corpus.txt --unit char --order 6 -o lm/chars6.arpa\n"
               "  build_lm.py --fix-tabs broken.arpa -o fixed.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="*", help="text files (one sentence per line, .gz allowed), manifests "
                                               "(.jsonl, their 'text') or LibriSpeech-layout folders (*.trans.txt)")
    parser.add_argument("-o", "--output", required=True, help="the ARPA file to write")
    parser.add_argument("--order", type=int, help="n-gram order (default: 3 for words, 6 for characters)")
    parser.add_argument("--unit", choices=UNITS, default="word",
                        help="word: for lexicon search (default); char: for lexicon-free search")
    parser.add_argument("--fix-tabs", metavar="ARPA", help="rewrite this space-separated ARPA file with tabs")
    return run(parser.prog, _build_lm, parser.parse_args(argv))


def _build_lm(args: argparse.Namespace) -> int:
    from asr.decoding.arpa import fix_arpa_tabs
    from asr.decoding.ngram import build_arpa, read_texts

    if args.fix_tabs:
        n = fix_arpa_tabs(args.fix_tabs, args.output)
        print(f"{args.output}: {n} n-grams rewritten with tabs")
        return 0
    if not args.text:
        raise Fail("give text files or manifests to build from (or --fix-tabs ARPA)")
    if args.order is not None and args.order < 1:
        raise Fail(f"--order must be at least 1, got {args.order}")
    model = build_arpa(read_texts(args.text), args.output, args.order, args.unit)
    counts = ", ".join(f"{n + 1}-grams {len(o)}" for n, o in enumerate(model.orders))
    print(f"{args.output}: {model.order}-gram {args.unit} LM, {len(model.orders[0]) - 1} tokens in the vocabulary; "
          f"{counts}")
    return 0
