"""Prepare a corpus: `python scripts/prepare.py librispeech|mini_librispeech|an4 --help`; the
implementation is asr.data.corpora.prepare.main."""

import sys

from asr.cli import setup_logging
from asr.data.corpora.prepare import main

if __name__ == "__main__":
    setup_logging()
    sys.exit(main())
