"""Train a model from a Hydra recipe, then test its best checkpoint.

Usage:
    python scripts/train.py                                  # built-in synthetic corpus
    python scripts/train.py recipe=librispeech trainer.devices=8
    python scripts/train.py model.hidden_size=512 trainer.max_epochs=5 logger=csv
    python scripts/train.py resume=auto                      # continue the newest run of the recipe

A bad option or value is one line on stderr and exit status 2, before anything is built.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from asr.config import check_command_line
from asr.report import print_results
from asr.train import USER_ERRORS, train

PROGRAM = "train.py"


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        results = train(cfg, HydraConfig.get().runtime.output_dir)
        if rank_zero_only.rank == 0:  # under DDP every rank gets the results; one prints them
            print_results(results)
    except USER_ERRORS as err:  # bad data or options: one line, no traceback
        print(f"{PROGRAM}: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_command_line("train", PROGRAM)
    main()
