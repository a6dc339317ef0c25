"""See `python scripts/serve.py --help`; the implementation is asr.cli.serve (also the `asr-serve` command)."""

import sys

from asr.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
