"""See `python scripts/make_manifest.py --help`; the implementation is asr.cli.make_manifest (also the `asr-make-manifest` command)."""

import sys

from asr.cli.make_manifest import main

if __name__ == "__main__":
    sys.exit(main())
