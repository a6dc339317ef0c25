"""Prepare a corpus: `python scripts/prepare.py librispeech|mini_librispeech|an4 --help`; the
implementation is asr.cli.prepare (also the `asr-prepare` command)."""

import sys

from asr.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
