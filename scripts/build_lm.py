"""See `python scripts/build_lm.py --help`; the implementation is asr.cli.build_lm (also the `asr-build-lm` command)."""

import sys

from asr.cli.build_lm import main

if __name__ == "__main__":
    sys.exit(main())
