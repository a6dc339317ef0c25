"""See `python scripts/evaluate.py --help`; the implementation is asr.cli.evaluate_main."""

import sys

from asr.cli import evaluate_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(evaluate_main())
