"""Training run: a composed Hydra config -> objects -> ``trainer.fit`` -> ``trainer.test`` of the best and final weights.

``scripts/train.py`` is a thin Hydra entry point around :func:`train`; tests and notebooks call
:func:`train` with a config from ``hydra.compose``. Every object is built here from its config
group, one log line each, so a run's structure reads top to bottom. The run folder and what it
continues from are :mod:`asr.training.runs`'; the devices' defaults :mod:`asr.training.devices`';
the schedule for this world size :mod:`asr.training.schedule`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from asr.config import ConfigError
from asr.data.corpora.base import CorpusError
from asr.data.datamodule import ASRDataModule
from asr.data.manifest import ManifestError
from asr.data.shards.layout import ShardError
from asr.model.acoustic import AcousticModel, ModelConfig
from asr.model.checkpoint import CheckpointError
from asr.model.features import FeatureConfig, SpecAugmentConfig
from asr.text import CharTokenizer, TextNormalizer
from asr.training import devices
from asr.training.checkpoints import AtomicCheckpointIO, init_weights
from asr.training.config import built, validate
from asr.training.module import ASRModule
from asr.training.optim import OptimConfig
from asr.training.preemption import Preemption
from asr.training.runs import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    continued_run,
    link,
    link_latest,
    resume_checkpoint,
    save_run_config,
)
from asr.training.schedule import Plan, ScheduleConfig, plan

log = logging.getLogger(__name__)

# Warnings a user can do nothing about, and why each is not true here.
QUIET_WARNINGS = (
    r"Checkpoint directory .* exists and is not empty",  # the folder holds our config.yaml from the start
    r".*`pin_memory` argument is set as true but no accelerator is found.*",  # data.pin_memory: auto is off there
    r".*dataloader is not resumable.*",  # asr.data.batching's sampler resumes mid-epoch exactly
    r".*does not have many workers which may be a bottleneck.*",  # data.num_workers is the recipe's measured choice
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's own call into PyTorch
)
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
LIGHTNING_TIPS = "💡 Tip:"  # Lightning's advertisements for its cloud products (litlogger, litmodels)


class LaunchError(ValueError):
    """A combination of launcher and strategy that cannot run; the message says what to do instead."""


# Errors caused by the command line or the data, reported by scripts/train.py as one line.
USER_ERRORS = (ConfigError, CorpusError, ManifestError, ShardError, CheckpointError, LaunchError, FileNotFoundError)


def build_tokenizer(cfg: DictConfig) -> CharTokenizer:
    return CharTokenizer(cfg.alphabet, TextNormalizer(**cfg.normalizer))


def build_model(cfg: DictConfig, vocab_size: int) -> AcousticModel:
    specaugment = SpecAugmentConfig(**cfg.specaugment) if cfg.get("specaugment") else None
    return AcousticModel(vocab_size, FeatureConfig(**cfg.features),
                         ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)), specaugment)


def build_datamodule(cfg: DictConfig, tokenizer: CharTokenizer, model: AcousticModel, seed: int) -> ASRDataModule:
    options = OmegaConf.to_container(cfg, resolve=True)
    options.pop("name")
    options.pop("root", None)  # data.root: a shortcut that corpus.root interpolates (asr/conf/data/librispeech.yaml)
    corpus = instantiate(options.pop("corpus"))
    return ASRDataModule(corpus, tokenizer, model.feature_config.sample_rate, seed=seed,
                         output_frame_rate=model.output_frame_rate, **options)


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    callbacks = []
    for name, spec in (cfg or {}).items():
        if spec is None:
            continue
        writes_checkpoints = str(spec.get("_target_", "")).endswith("ModelCheckpoint")
        extra = {"dirpath": str(run_dir / CHECKPOINT_DIR)} if writes_checkpoints else {}
        callbacks.append(built(spec, f"callbacks.{name}", **extra))
    return callbacks


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    loggers = []
    for name, spec in (cfg or {}).items():
        if spec is not None and (logger := built(spec, f"logger.{name}", save_dir=str(run_dir))) is not None:
            loggers.append(logger)
    return loggers


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback], loggers: list[Any]) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer``, with this machine's device defaults and checkpoints
    written so that a kill never leaves a half-written one."""
    return built(cfg.trainer, "trainer", default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers or False,
                 plugins=[AtomicCheckpointIO(run_dir)], **devices.trainer_overrides(cfg.trainer, cfg.tf32))


def check_launch(trainer: L.Trainer) -> None:
    """Refuse what cannot work: Lightning starts local DDP processes by running the command line
    again, which under a Hydra multirun (``-m``) would start the whole sweep once per device."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
            and isinstance(launcher, _SubprocessScriptLauncher)):
        raise LaunchError("a Hydra multirun (-m) cannot start DDP processes on this machine; sweep with "
                         "hydra/launcher=slurm (one job per point), or run one command per point")


class _NoTips:
    """A logging filter that drops Lightning's tips (advertisements, not advice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return LIGHTNING_TIPS not in record.getMessage()


def quiet_lightning() -> None:
    """Silence the warnings of QUIET_WARNINGS and Lightning's tips (idempotent)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())


@contextlib.contextmanager
def _one_line_interval() -> Iterator[None]:
    """Lightning's multi-line complaint about a validation interval longer than an epoch (known only
    once the data is loaded), as one ConfigError line saying what to set."""
    try:
        yield
    except ValueError as err:
        found = re.search(r"`val_check_interval` \((\d+)\) must be less than or equal to the number of the "
                          r"training batches \((\d+)\)", str(err))
        if found is None:
            raise
        raise ConfigError(f"trainer.val_check_interval={found.group(1)}: more than the {found.group(2)} batches of an "
                          "epoch; set trainer.check_val_every_n_epoch=null to count steps across epochs, or a "
                          "smaller interval") from None


def apply_schedule(cfg: DictConfig, trainer: L.Trainer, datamodule: ASRDataModule) -> Plan:
    """The schedule for this trainer's world size, set where Lightning and the sampler read it."""
    schedule = plan(ScheduleConfig(**cfg.schedule), trainer.world_size, datamodule.batch_seconds,
                    cfg.optim.warmup_steps, trainer.accumulate_grad_batches)
    datamodule.batch_seconds = schedule.device_batch_seconds
    trainer.accumulate_grad_batches = schedule.accumulate
    if schedule.val_check_interval is not None:
        trainer.val_check_interval = schedule.val_check_interval
        trainer.check_val_every_n_epoch = None  # count batches across epochs
    return schedule


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, float]:
    """Train and/or test as ``cfg`` says; return the final metrics (test WER/CER per set of the best
    and the final weights, best val WER). A bad value in ``cfg`` is a ConfigError (one line) before
    anything is built; a preemption raises :class:`~asr.training.preemption.Preempted` once its
    checkpoint is written. ``resume=auto`` continues the newest run beside ``run_dir`` in its folder."""
    validate(cfg)
    quiet_lightning()
    run_dir = Path(run_dir).resolve()
    run_dir = continued_run(run_dir.parent, cfg.resume) or run_dir
    L.seed_everything(cfg.seed, workers=True)
    tokenizer = build_tokenizer(cfg.text)
    log.info("tokenizer: %d symbols", len(tokenizer))
    model = build_model(cfg, len(tokenizer))
    log.info("model: %.2f M parameters, %.0f output frames/s", sum(p.numel() for p in model.parameters()) / 1e6,
             model.output_frame_rate)
    if cfg.get("init_from"):  # a resumed run's own checkpoint, loaded by fit below, replaces these weights
        try:
            init_weights(model, tokenizer, cfg.init_from)
        except CheckpointError as err:
            raise ConfigError(f"init_from={err}") from None
        log.info("model: weights from %s (fine-tuning: optimizer and schedule start afresh)", cfg.init_from)
    datamodule = build_datamodule(cfg.data, tokenizer, model, cfg.seed)
    log.info("data: %s", type(datamodule.corpus).__name__)
    run_config = save_run_config(cfg, run_dir)
    loggers = build_loggers(cfg.logger, run_dir)
    callbacks = build_callbacks(cfg.callbacks, run_dir)
    if not loggers:  # nothing to send learning rates to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(cfg, run_dir, callbacks, loggers)
    schedule = apply_schedule(cfg, trainer, datamodule)
    optim = OptimConfig(**{**OmegaConf.to_container(cfg.optim, resolve=True), "warmup_steps": schedule.warmup_steps})
    module = ASRModule(model, tokenizer, optim, run_config, datamodule.test_names, schedule)
    for logger in trainer.loggers:  # the resolved config: W&B's run config, CSV's hparams.yaml, TensorBoard's hparams
        logger.log_hyperparams(run_config)
    log.info("run folder: %s", run_dir)
    if trainer.is_global_zero:
        link_latest(run_dir)
    check_launch(trainer)
    results: dict[str, float] = {}
    if cfg.train:
        preemption = next((c for c in callbacks if isinstance(c, Preemption)), None)
        with preemption.main_thread_only() if preemption else contextlib.nullcontext(), _one_line_interval():
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg.resume, run_dir))
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_score is not None:
            results["val/wer_best"] = float(trainer.checkpoint_callback.best_model_score)
            if trainer.is_global_zero:  # checkpoints/best.ckpt -> the best checkpoint by validation WER
                best_path = Path(trainer.checkpoint_callback.best_model_path)
                link(best_path.parent / BEST_CHECKPOINT, best_path)
    if cfg.test:
        results.update(decode_test_sets(trainer, module, datamodule, trained=bool(cfg.train)))
    return results


def decode_test_sets(trainer: L.Trainer, module: ASRModule, datamodule: ASRDataModule,
                     trained: bool) -> dict[str, float]:
    """Test sets decoded with the final weights (``test_final/<set>/wer``, after training) and with
    the best checkpoint by validation WER (``test/<set>/wer``); once when the two are the same step.
    Without training: the module's weights, as ``test/<set>/wer``."""

    def run(prefix: str, ckpt_path: str | None) -> dict[str, float]:
        module.test_prefix = prefix
        return {k: float(v) for metrics in trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path)
                for k, v in metrics.items()}

    if not trained:
        return run("test", None)
    final_step = trainer.global_step
    results = run("test_final", None)  # the weights in memory: the last step's
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None else ""
    if best and _step(best) != final_step:
        results.update(run("test", best))
    else:  # the final step is the best one (or there is no best): the same numbers
        results.update({k.replace("test_final/", "test/", 1): v for k, v in list(results.items())})
    return results


def _step(checkpoint: str) -> int | None:
    """The global step a checkpoint was written at (memory-mapped: no tensor is read)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 - unreadable: not the final step
        return None
