"""See `python scripts/decode.py --help`; the implementation is asr.cli.decode_main."""

import sys

from asr.cli import decode_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(decode_main())
