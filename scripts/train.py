"""Train a model from a Hydra recipe, then test it: `python scripts/train.py --help`; the
implementation is asr.cli.train (also the `asr-train` command)."""

from asr.cli.train import main

if __name__ == "__main__":
    main()
