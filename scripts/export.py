"""See `python scripts/export.py --help`; the implementation is asr.cli.export_main."""

import sys

from asr.cli import export_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(export_main())
