"""See `python scripts/prepare_librispeech.py --help`; the implementation is
asr.data.corpora.librispeech.prepare_main."""

import sys

from asr.cli import setup_logging
from asr.data.corpora.librispeech import prepare_main

if __name__ == "__main__":
    setup_logging()
    sys.exit(prepare_main())
