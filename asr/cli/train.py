"""``train.py`` / ``asr-train``: a Hydra recipe and overrides -> a trained, tested run folder.

    python scripts/train.py                                  # built-in synthetic corpus
    python scripts/train.py recipe=librispeech trainer.devices=8
    python scripts/train.py model.hidden_size=512 trainer.max_epochs=5 logger=csv
    python scripts/train.py resume=auto                      # continue the newest run of the recipe

The config groups are ``asr/conf`` (shipped with the package, so the ``asr-train`` entry point
works from anywhere). A bad option or value is one line on stderr and exit status 2, before
anything is built (:func:`asr.training.config.check_command_line`); Hydra's own flags (``--cfg job``,
``--help``, ``-m``) go to Hydra.

Exit status: 0 trained (and tested); 2 bad options or data (one line); 75 preempted: a checkpoint
was written, start the same command again (a requeued SLURM job does, by itself) and the run
continues in its folder; anything else (1) is a failure.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from asr.report import print_results
from asr.training.config import CONF_DIR, check_command_line
from asr.training.preemption import PREEMPTED_EXIT, Preempted
from asr.training.train import USER_ERRORS, train

PROGRAM = "train.py"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _run(cfg: DictConfig) -> None:
    try:
        results = train(cfg, HydraConfig.get().runtime.output_dir)
        if rank_zero_only.rank == 0:  # under DDP every rank gets the results; one prints them
            print_results(results)
    except USER_ERRORS as err:  # bad data or options: one line, no traceback
        print(f"{PROGRAM}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Preempted as stop:  # a checkpoint is written: the status tells a requeue loop to start again
        print(f"{PROGRAM}: {stop}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT)


def main() -> None:
    """Check the command line (``sys.argv``), then hand it to Hydra; exits with 2 on a bad value."""
    check_command_line("train", PROGRAM)
    _run()
