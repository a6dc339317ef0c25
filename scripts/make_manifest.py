"""See `python scripts/make_manifest.py --help`; the implementation is asr.cli.make_manifest_main."""

import sys

from asr.cli import make_manifest_main, setup_logging

if __name__ == "__main__":
    setup_logging()
    sys.exit(make_manifest_main())
