"""Training run: a composed Hydra config -> objects -> ``trainer.fit`` -> ``trainer.test``.

``scripts/train.py`` is a thin Hydra entry point around :func:`train`; tests and notebooks call
:func:`train` with a config from ``hydra.compose``. Every object is built here from its config
group, one log line each, so a run's structure reads top to bottom.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from asr.config import ConfigError
from asr.data.corpora.base import CorpusError
from asr.data.datamodule import ASRDataModule
from asr.data.manifest import ManifestError
from asr.files import atomic_write
from asr.model.acoustic import AcousticModel, ModelConfig
from asr.model.checkpoint import CheckpointError
from asr.model.features import FeatureConfig, SpecAugmentConfig
from asr.text import CharTokenizer, TextNormalizer
from asr.training.callbacks import HPC_PREFIX, Preempted
from asr.training.checkpoints import AtomicCheckpointIO, check_resumable, init_weights
from asr.training.config import built, validate
from asr.training.module import ASRModule
from asr.training.optim import OptimConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # inside the run folder
BEST_CHECKPOINT = "best.ckpt"  # a link to the best checkpoint by validation WER, made after training
PREEMPTION_CHECKPOINTS = f"{HPC_PREFIX}*.ckpt"  # in the run folder, written by asr.training.callbacks.Preemption


class LaunchError(ValueError):
    """A combination of launcher and strategy that cannot run; the message says what to do instead."""


# Errors caused by the command line or the data, reported by scripts/train.py as one line.
USER_ERRORS = (ConfigError, CorpusError, ManifestError, CheckpointError, LaunchError, FileNotFoundError)


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
        extra = {"dirpath": str(run_dir / CHECKPOINT_DIR)} if name == "checkpoint" else {}
        callbacks.append(built(spec, f"callbacks.{name}", **extra))
    return callbacks


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    loggers = []
    for name, spec in (cfg or {}).items():
        if spec is not None and (logger := built(spec, f"logger.{name}", save_dir=str(run_dir))) is not None:
            loggers.append(logger)
    return loggers


def run_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints a run folder can be continued from: preemption checkpoints, last.ckpt and the
    top-k (links such as best.ckpt left out: their targets are in the list)."""
    paths = [*run_dir.glob(PREEMPTION_CHECKPOINTS), *run_dir.glob(f"{CHECKPOINT_DIR}/*.ckpt")]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def _newest(paths: list[Path]) -> str | None:
    """The newest checkpoint that training can continue from; each newer one that cannot (a kill
    during its write, a damaged disk) is one warning line naming it."""
    for path in sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            check_resumable(path)
        except CheckpointError as err:
            log.warning("%s: skipped, trying the next newest checkpoint", err)
            continue
        return str(path)
    return None


def find_resume_checkpoint(resume: str | None, runs_dir: Path, run_dir: Path | None = None) -> str | None:
    """``None`` -> start fresh, unless ``run_dir`` already holds checkpoints: then it is a run being
    continued (a requeued SLURM job, whose folder is named after its job id) and its newest
    checkpoint is used; ``"auto"`` -> the newest checkpoint of any run under ``runs_dir`` (or fresh
    if none); a path -> that checkpoint, which must exist and load (else a one-line error). Found
    checkpoints are checked (``check_resumable``): a truncated one gives way to the next newest."""
    if not resume:
        found = _newest(run_checkpoints(run_dir)) if run_dir is not None else None
        if found:
            log.info("%s already has checkpoints: continuing this run", run_dir)
        return found
    if resume == "auto":
        found = _newest([p for run in runs_dir.glob("*") if run.is_dir() for p in run_checkpoints(run)])
        if found is None:
            log.info("resume=auto: no checkpoint under %s, starting a new run", runs_dir)
        return found
    if not Path(resume).is_file():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint; use resume=auto or a path to a .ckpt file")
    check_resumable(resume)
    return resume


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


def save_run_config(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Write the resolved config beside the checkpoints; return it as plain data."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with atomic_write(run_dir / CHECKPOINT_DIR / "config.yaml") as f:
        f.write(OmegaConf.to_yaml(resolved))
    return resolved


def link(link_path: Path, target: Path) -> None:
    """Point ``link_path`` at ``target`` (a sibling), replacing any older link atomically; best effort:
    some file systems have no symlinks."""
    tmp = link_path.parent / f".{link_path.name}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, link_path)
    except OSError as err:
        log.warning("could not link %s -> %s: %s", link_path, target, err)


def link_latest(run_dir: Path) -> None:
    """``<runs>/<name>/latest`` -> this run folder."""
    link(run_dir.parent / "latest", run_dir)


def train(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, float]:
    """Train and/or test as ``cfg`` says; return the final metrics (test WER/CER per set, best val WER).
    A bad value in ``cfg`` is a ConfigError (one line) before anything is built."""
    validate(cfg)
    run_dir = Path(run_dir).resolve()
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
    module = ASRModule(model, tokenizer, OptimConfig(**cfg.optim), run_config, datamodule.test_names)
    loggers = build_loggers(cfg.logger, run_dir)
    callbacks = build_callbacks(cfg.callbacks, run_dir)
    if not loggers:  # nothing to send learning rates to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = built(cfg.trainer, "trainer", default_root_dir=str(run_dir), callbacks=callbacks,
                               logger=loggers or False, plugins=[AtomicCheckpointIO(run_dir)])  # kill-safe writes
    for logger in trainer.loggers:  # the resolved config: W&B's run config, CSV's hparams.yaml, TensorBoard's hparams
        logger.log_hyperparams(run_config)
    # The checkpoint folder holds our config.yaml from the start; that is not a stale run.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    log.info("run folder: %s", run_dir)
    if trainer.is_global_zero:
        link_latest(run_dir)
    check_launch(trainer)
    results: dict[str, float] = {}
    if cfg.train:
        ckpt_path = find_resume_checkpoint(cfg.resume, run_dir.parent, run_dir)
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except Preempted as stop:
            log.warning("%s", stop)
            return {}
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_score is not None:
            results["val/wer_best"] = float(trainer.checkpoint_callback.best_model_score)
            if trainer.is_global_zero:  # checkpoints/best.ckpt -> the best checkpoint by validation WER
                best_path = Path(trainer.checkpoint_callback.best_model_path)
                link(best_path.parent / BEST_CHECKPOINT, best_path)
    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if cfg.train and trainer.checkpoint_callback else ""
        for metrics in trainer.test(module, datamodule=datamodule, ckpt_path=best or None):
            results.update({k: float(v) for k, v in metrics.items()})
    return results
