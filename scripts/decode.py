"""See `python scripts/decode.py --help`; the implementation is asr.cli.decode (also the `asr-decode` command)."""

import sys

from asr.cli.decode import main

if __name__ == "__main__":
    sys.exit(main())
