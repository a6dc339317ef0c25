"""See `python scripts/tune_lm.py --help`; the implementation is asr.cli.tune_lm_main."""

import sys

from asr.cli import tune_lm_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(tune_lm_main())
