"""See `python scripts/prepare_librispeech.py --help`: the same as `python scripts/prepare.py
librispeech`; the implementation is asr.data.corpora.prepare.main."""

import sys

from asr.cli import setup_logging
from asr.data.corpora.prepare import main

if __name__ == "__main__":
    setup_logging()
    sys.exit(main(prog="prepare_librispeech.py", corpus="librispeech"))
