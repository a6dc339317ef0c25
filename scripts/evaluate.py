"""See `python scripts/evaluate.py --help`; the implementation is asr.cli.evaluate (also the `asr-evaluate` command)."""

import sys

from asr.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
