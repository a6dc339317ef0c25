"""See `python scripts/build_lm.py --help`; the implementation is asr.cli.build_lm_main."""

import sys

from asr.cli import build_lm_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(build_lm_main())
