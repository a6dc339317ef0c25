"""The training run's config: ``asr/conf/train.yaml`` composed with a command line -> checked values.

:class:`TrainConfig` is the schema of the whole run; :func:`register` stores it in Hydra's
ConfigStore with each corpus's ``/schema/corpus/<name>`` (derived from its constructor by
:func:`asr.config.signature_schema`), so the YAML files only override. While composing, Hydra
rejects unknown keys and values of the wrong type; :func:`validate` then checks ranges and allowed
values (each dataclass's ``__post_init__``, the corpus's and data module's own checks, Lightning's
Trainer arguments, the resume path) before any model or data is built. Every failure is one
:class:`~asr.config.ConfigError` line naming the key, the value and what is allowed.

``scripts/train.py`` (:mod:`asr.cli.train`) calls :func:`check_command_line` before ``hydra.main``
runs, so a bad command line is one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from asr.config import ConfigError, config_error, first_line, signature_schema, typed
from asr.data.corpora.an4 import AN4Corpus
from asr.data.corpora.base import ManifestCorpus
from asr.data.corpora.librispeech import LibriSpeechCorpus, MiniLibriSpeechCorpus
from asr.data.corpora.shards import ShardCorpus
from asr.data.corpora.synthetic import SyntheticCorpus
from asr.data.datamodule import ASRDataModule, check_data_options
from asr.model.acoustic import ModelConfig
from asr.model.checkpoint import CheckpointError
from asr.model.features import FeatureConfig, SpecAugmentConfig
from asr.text import DEFAULT_ALPHABET, CharTokenizer, TextNormalizer
from asr.training.checkpoints import check_resumable
from asr.training.optim import OptimConfig
from asr.training.schedule import ScheduleConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # asr/conf: Hydra's config groups, shipped with the package

# asr/conf/data/<name>.yaml starts from /schema/corpus/<name>: the corpus class's constructor signature.
CORPORA: dict[str, type] = {"synthetic": SyntheticCorpus, "librispeech": LibriSpeechCorpus,
                            "mini_librispeech": MiniLibriSpeechCorpus, "an4": AN4Corpus, "manifest": ManifestCorpus,
                            "shards": ShardCorpus}

# Arguments of ASRDataModule that train.py fills in from other groups; the rest are data.<key>.
_DATAMODULE_FROM_ELSEWHERE = ("corpus", "tokenizer", "sample_rate", "seed", "output_frame_rate")


@dataclass
class TextConfig:
    """The character tokenizer (``asr.text.CharTokenizer``)."""

    alphabet: str = DEFAULT_ALPHABET  # after blank (id 0) and space (id 1)
    normalizer: Any = field(default_factory=signature_schema(TextNormalizer, target=False))


@dataclass
class PathsConfig:
    data_dir: str = "data"  # corpora are generated / prepared below this folder
    runs_dir: str = "runs"  # one folder per run: config, checkpoints, logs


DataConfig = signature_schema(ASRDataModule, exclude=_DATAMODULE_FROM_ELSEWHERE, target=False, extra=(
    ("name", str, MISSING),  # names the run folder: runs/<name>/...
    ("root", Optional[str], None),  # a shortcut that corpus.root interpolates (asr/conf/data/librispeech.yaml)
    ("corpus", Any, MISSING),  # /schema/corpus/<name>, chosen by the data file's defaults list
))


@dataclass
class TrainConfig:
    """The whole run (asr/conf/train.yaml). Groups that are Lightning's or Hydra's own objects
    (trainer, logger, callbacks) stay ``_target_`` dicts, checked by :func:`validate`."""

    name: str = MISSING  # runs go to ${paths.runs_dir}/${name}/<date>_<time> (asr.training.runs)
    seed: int = 1234  # model init, data order, augmentation
    train: bool = True  # run trainer.fit
    test: bool = True  # then evaluate the best and the final weights on data.test_splits
    # null: a new run (a requeued SLURM job continues its own); auto: continue the newest run of this
    # name in its folder; or a .ckpt path (its run folder continues, or a new run starts from it)
    resume: Optional[str] = None
    # null, or a .ckpt whose model weights start this run (fine-tuning: a new run with its own
    # optimizer and schedule; asr.checkpoint.init_weights); resume= continues a run instead
    init_from: Optional[str] = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: Any = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    specaugment: Optional[SpecAugmentConfig] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    tf32: bool = True  # on CUDA: TF32 matmuls and convolutions for float32 work (Ampere and later)
    trainer: Any = field(default_factory=dict)
    logger: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    debug: Any = None


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent); done when this module is imported."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, cls in CORPORA.items():
        cs.store(group="schema/corpus", name=name, node=signature_schema(cls))


register()


def compose_config(*overrides: str, config_name: str = "train") -> DictConfig:
    """The composed config of ``asr/conf/<config_name>.yaml`` with Hydra ``overrides``, as scripts/train.py
    would get it (for tests, notebooks and benchmarks; not checked: :func:`validate` does that)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def _precisions() -> tuple[str, ...]:
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    def flat(t: Any) -> list[Any]:
        return [x for a in typing.get_args(t) for x in (flat(a) if typing.get_args(a) else [a])]
    return tuple(dict.fromkeys(str(p) for p in flat(_PRECISION_INPUT)))


@dataclass
class TrainerChecks:
    """The Lightning Trainer arguments that we check before Lightning sees them (the others pass
    through, and Lightning's own error is reworded as one line)."""

    max_epochs: Optional[int] = None
    max_steps: Optional[int] = None
    precision: Optional[str] = None  # Lightning's, or "auto": chosen by the device (asr.training.train)
    num_nodes: Optional[int] = None
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: Optional[int] = None
    val_check_interval: Optional[float] = None
    check_val_every_n_epoch: Optional[int] = None
    accumulate_grad_batches: Optional[int] = None
    num_sanity_val_steps: Optional[int] = None
    max_time: Optional[str] = None
    enable_progress_bar: Any = None  # true, false, or "auto": on when stderr is a terminal (asr.training.train)

    def __post_init__(self) -> None:
        if self.enable_progress_bar not in (None, True, False, "auto"):
            raise ValueError(f"enable_progress_bar={self.enable_progress_bar}: must be true, false or auto")
        for key in ("max_epochs", "max_steps"):
            if (value := getattr(self, key)) is not None and value < -1:
                raise ValueError(f"{key}={value}: must be -1 (no limit) or a number >= 0")
        for key in ("num_nodes", "log_every_n_steps", "check_val_every_n_epoch", "accumulate_grad_batches"):
            if (value := getattr(self, key)) is not None and value < 1:
                raise ValueError(f"{key}={value}: must be at least 1")
        if self.precision is not None and self.precision not in (allowed := ("auto", *_precisions())):
            raise ValueError(f"precision={self.precision}: must be one of {', '.join(allowed)}")
        if self.gradient_clip_val is not None and self.gradient_clip_val < 0:
            raise ValueError(f"gradient_clip_val={self.gradient_clip_val}: must be >= 0 (0 or null: no clipping)")
        if self.val_check_interval is not None and self.val_check_interval <= 0:
            raise ValueError(f"val_check_interval={self.val_check_interval}: must be a fraction of an epoch "
                             "in (0, 1] or a number of steps")
        if self.num_sanity_val_steps is not None and self.num_sanity_val_steps < -1:
            raise ValueError(f"num_sanity_val_steps={self.num_sanity_val_steps}: must be -1 (all) or >= 0")
        if self.max_time is not None:
            parts = self.max_time.split(":")
            if len(parts) != 4 or not all(p.isdigit() for p in parts):
                raise ValueError(f"max_time={self.max_time}: must be DD:HH:MM:SS, e.g. 00:01:30:00")


def validate(cfg: DictConfig) -> None:
    """Check every value of a composed training config; raise ConfigError (one line) on the first
    bad one. Builds nothing heavier than a corpus object (whose constructor only stores options)."""
    from hydra.utils import instantiate

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise ConfigError(f"{missing[0]} is not set: add {missing[0]}=... to the command line")
    for key, schema in (("features", FeatureConfig), ("model", ModelConfig), ("optim", OptimConfig),
                        ("schedule", ScheduleConfig),
                        ("text.normalizer", signature_schema(TextNormalizer, target=False))):
        typed(schema, OmegaConf.select(cfg, key), key)
    if cfg.get("specaugment") is not None:
        typed(SpecAugmentConfig, cfg.specaugment, "specaugment")
    try:
        CharTokenizer(cfg.text.alphabet)
    except ValueError as err:
        raise ConfigError(f"text.{err}") from None
    data = OmegaConf.to_container(cfg.data, resolve=True)
    try:
        check_data_options(**{k: v for k, v in data.items() if k not in ("name", "root", "corpus")})
    except ValueError as err:
        raise ConfigError(f"data.{err}") from None
    try:
        corpus = instantiate(data["corpus"])
    except Exception as err:  # noqa: BLE001 - a corpus's own check or Hydra's wrapper of it
        raise ConfigError(f"data.corpus: {first_line(err.__cause__ or err)}") from None
    if isinstance(corpus, ManifestCorpus):
        for split, path in corpus.splits.items():
            if not path.is_file():
                raise ConfigError(f"data.corpus.splits.{split}={path}: no such manifest; build one with "
                                  "'python scripts/make_manifest.py' or correct the path")
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    known = {f.name for f in dataclasses.fields(TrainerChecks)}
    typed(TrainerChecks, {k: v for k, v in trainer.items() if k in known}, "trainer")
    if cfg.optim.clock == "time" and not trainer.get("max_time"):
        raise ConfigError("optim.clock=time: the decay follows trainer.max_time, which is not set; set "
                          "trainer.max_time=DD:HH:MM:SS or optim.clock=steps")
    resume = cfg.get("resume")
    if resume not in (None, "auto"):
        if not Path(resume).is_file():
            raise ConfigError(f"resume={resume}: no such checkpoint; use resume=auto or the path of a .ckpt file")
        try:
            check_resumable(resume)
        except CheckpointError as err:
            raise ConfigError(f"resume={err}") from None
    init_from = cfg.get("init_from")
    if init_from is not None and not Path(init_from).is_file():
        raise ConfigError(f"init_from={init_from}: no such checkpoint; give the path of a .ckpt written by scripts/train.py")


def built(spec: Any, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(spec, **kwargs)``, with the constructor's error (Lightning's
    multi-line MisconfigurationException, a wrong argument) worded as one ConfigError line naming ``key``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        text = " ".join(line.strip() for line in str(cause).strip().splitlines() if line.strip())
        raise ConfigError(f"{key}: {text or type(cause).__name__}") from None


_HYDRA_FLAGS_TO_LEAVE = {"-h", "--help", "--hydra-help", "--info", "-i", "-c", "--cfg", "-p", "--package",
                         "-m", "--multirun", "--shell-completion", "-sc", "--resolve", "--version"}


def check_command_line(config_name: str, program: str, argv: Sequence[str] | None = None,
                       check: Callable[[DictConfig], None] = validate) -> None:
    """Compose ``config_name`` with the command line's overrides and ``check`` it; on any error print
    ``<program>: error: <one line>`` to stderr and exit with status 2. Command lines for Hydra itself
    (``--help``, ``--cfg``, ``-m`` sweeps) are left to Hydra; a sweep's points are checked by
    ``train()`` when each one runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=")[0] in _HYDRA_FLAGS_TO_LEAVE for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        check(compose_config(*overrides, config_name=config_name))
    except ConfigError as err:
        _exit(program, str(err))
    except Exception as err:  # noqa: BLE001 - Hydra's and OmegaConf's composition errors, worded as one line
        _exit(program, config_error(err))


def _exit(program: str, message: str) -> None:
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(2)
