"""See `python scripts/tune_lm.py --help`; the implementation is asr.cli.tune_lm (also the `asr-tune-lm` command)."""

import sys

from asr.cli.tune_lm import main

if __name__ == "__main__":
    sys.exit(main())
