"""See `python scripts/shard.py --help`; the implementation is asr.cli.shard (also the `asr-shard` command)."""

import sys

from asr.cli.shard import main

if __name__ == "__main__":
    sys.exit(main())
