"""See `python scripts/prepare_librispeech.py --help`: the same as `python scripts/prepare.py
librispeech`; the implementation is asr.cli.prepare."""

import sys

from asr.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main(prog="prepare_librispeech.py", corpus="librispeech"))
