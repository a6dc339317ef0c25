"""See `python scripts/export.py --help`; the implementation is asr.cli.export (also the `asr-export` command)."""

import sys

from asr.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
