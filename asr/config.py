"""Config schema: the dataclasses in code -> Hydra structured configs; a composed config -> checked values.

Every default lives in code, once: in a stage's dataclass (``FeatureConfig``, ``SpecAugmentConfig``,
``ModelConfig``, ``OptimConfig``) or in a constructor's signature (each corpus, the data module, the
text normalizer), from which :func:`signature_schema` derives a dataclass. :func:`register` stores
them in Hydra's ConfigStore: ``conf/train.yaml`` starts from ``train_schema`` (:class:`TrainConfig`)
and each ``conf/data/*.yaml`` from its corpus's ``/schema/corpus/<name>``, so the YAML files only
override. While composing, Hydra rejects unknown keys and values of the wrong type;
:func:`validate` then checks ranges and allowed values (each dataclass's ``__post_init__``, the
corpus's and data module's own checks, Lightning's Trainer arguments, the resume path) before any
model or data is built. Every failure is one :class:`ConfigError` line naming the key, the value
and what is allowed; :func:`config_error` words Hydra's and OmegaConf's multi-line errors that way.

Scripts call :func:`check_command_line` before ``hydra.main`` runs, so a bad command line is one
line on stderr and exit status 2 (see ``scripts/train.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asr.checkpoint import CheckpointError, check_resumable
from asr.data.corpora.an4 import AN4Corpus
from asr.data.corpora.base import ManifestCorpus
from asr.data.corpora.librispeech import LibriSpeechCorpus, MiniLibriSpeechCorpus
from asr.data.corpora.synthetic import SyntheticCorpus
from asr.data.datamodule import ASRDataModule, check_data_options
from asr.features import FeatureConfig, SpecAugmentConfig
from asr.model import ModelConfig
from asr.optim import OptimConfig
from asr.text import DEFAULT_ALPHABET, CharTokenizer, TextNormalizer

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# conf/data/<name>.yaml starts from /schema/corpus/<name>: the corpus class's constructor signature.
CORPORA: dict[str, type] = {"synthetic": SyntheticCorpus, "librispeech": LibriSpeechCorpus,
                            "mini_librispeech": MiniLibriSpeechCorpus, "an4": AN4Corpus, "manifest": ManifestCorpus}

# Arguments of ASRDataModule that train.py fills in from other groups; the rest are data.<key>.
_DATAMODULE_FROM_ELSEWHERE = ("corpus", "tokenizer", "sample_rate", "seed", "output_frame_rate")


class ConfigError(ValueError):
    """A config value that cannot work: one line naming the key, the value and what is allowed."""


# --- schemas ---------------------------------------------------------------------------------------


def _schema_type(hint: Any) -> Any:
    """A constructor's annotation -> one OmegaConf can check (abstract containers -> dict/list,
    paths -> str, anything else it cannot type -> Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (str, int, float, bool, Any):
        return hint
    if hint is os.PathLike or origin is os.PathLike or hint is Path:
        return str
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        kinds = {_schema_type(a) for a in members}
        inner = kinds.pop() if len(kinds) == 1 else Any
        return Optional[inner] if type(None) in args and inner is not Any else inner
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return dict[str, _schema_type(args[1])] if len(args) == 2 else dict[str, Any]
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        kinds = {_schema_type(a) for a in args if a is not Ellipsis}
        return list[kinds.pop()] if len(kinds) == 1 else list[Any]
    if dataclasses.is_dataclass(hint):
        return hint
    return Any


def _field_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return field(default_factory=lambda v=dict(value): dict(v))
    if isinstance(value, (list, tuple)):
        return field(default_factory=lambda v=list(value): list(v))
    return field(default=value)


@functools.cache  # one schema class per constructor: OmegaConf merges nodes of the same class only
def signature_schema(cls: type, exclude: tuple[str, ...] = (), target: bool = True,
                     extra: tuple[tuple[str, Any, Any], ...] = ()) -> type:
    """A dataclass whose fields are ``cls``'s constructor arguments, with their types and defaults
    (the constructor stays the one home of its defaults). ``target``: add ``_target_`` naming
    ``cls`` for ``hydra.utils.instantiate``; ``extra``: more ``(name, type, default)`` fields."""
    specs: list[tuple[str, Any, Any]] = []
    if target:
        specs.append(("_target_", str, field(default=f"{cls.__module__}.{cls.__qualname__}")))
    seen = set(exclude)
    for base in cls.__mro__:  # a constructor that passes **options on: its parent's arguments too
        if "__init__" not in vars(base) or base is object:
            continue
        hints = typing.get_type_hints(base.__init__)
        params = list(inspect.signature(base.__init__).parameters.values())[1:]
        for p in params:
            if p.name in seen or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            seen.add(p.name)
            default = MISSING if p.default is p.empty else p.default
            specs.append((p.name, _schema_type(hints.get(p.name, Any)), _field_default(default)))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    specs += [(name, kind, _field_default(default)) for name, kind, default in extra]
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", specs)


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
    ("root", Optional[str], None),  # a shortcut that corpus.root interpolates (conf/data/librispeech.yaml)
    ("corpus", Any, MISSING),  # /schema/corpus/<name>, chosen by the data file's defaults list
))


@dataclass
class TrainConfig:
    """The whole run (conf/train.yaml). Groups that are Lightning's or Hydra's own objects
    (trainer, logger, callbacks) stay ``_target_`` dicts, checked by :func:`validate`."""

    name: str = MISSING  # runs go to ${paths.runs_dir}/${name}/<date>_<time>
    seed: int = 1234  # model init, data order, augmentation
    train: bool = True  # run trainer.fit
    test: bool = True  # then evaluate the best checkpoint on data.test_splits
    # null: new run (a run folder that has checkpoints continues); auto: newest checkpoint of this
    # recipe's runs; or a .ckpt path
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
    """The composed config of ``conf/<config_name>.yaml`` with Hydra ``overrides``, as scripts/train.py
    would get it (for tests, notebooks and benchmarks; not checked: :func:`validate` does that)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


# --- checks ----------------------------------------------------------------------------------------


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
    precision: Optional[str] = None
    num_nodes: Optional[int] = None
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: Optional[int] = None
    val_check_interval: Optional[float] = None
    check_val_every_n_epoch: Optional[int] = None
    accumulate_grad_batches: Optional[int] = None
    num_sanity_val_steps: Optional[int] = None
    max_time: Optional[str] = None

    def __post_init__(self) -> None:
        for key in ("max_epochs", "max_steps"):
            if (value := getattr(self, key)) is not None and value < -1:
                raise ValueError(f"{key}={value}: must be -1 (no limit) or a number >= 0")
        for key in ("num_nodes", "log_every_n_steps", "check_val_every_n_epoch", "accumulate_grad_batches"):
            if (value := getattr(self, key)) is not None and value < 1:
                raise ValueError(f"{key}={value}: must be at least 1")
        if self.precision is not None and self.precision not in (allowed := _precisions()):
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


def typed(schema: type, values: Any, key: str) -> Any:
    """``values`` (a mapping) checked against ``schema`` and built into its dataclass, which runs
    its ``__post_init__`` checks. Raises ConfigError naming ``key.<field>``."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ConfigError(config_error(err, prefix=key)) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}.{_first_line(err)}" if key else _first_line(err)) from None


def validate(cfg: DictConfig) -> None:
    """Check every value of a composed training config; raise ConfigError (one line) on the first
    bad one. Builds nothing heavier than a corpus object (whose constructor only stores options)."""
    from hydra.utils import instantiate

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise ConfigError(f"{missing[0]} is not set: add {missing[0]}=... to the command line")
    for key, schema in (("features", FeatureConfig), ("model", ModelConfig), ("optim", OptimConfig),
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
        raise ConfigError(f"data.corpus: {_first_line(err.__cause__ or err)}") from None
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


# --- wording of errors -------------------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def config_error(err: BaseException, prefix: str = "") -> str:
    """One line for an error raised while composing or checking a config: OmegaConf's errors name
    the key (``full_key``) and the problem (``msg``) over several lines; Hydra's wrap them."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "msg", None):
        key = ".".join(k for k in (prefix, str(cause.full_key or "")) if k)
        msg = _first_line(Exception(cause.msg)).replace("Schema'", "'")
        value = getattr(cause, "value", None)
        if "could not be converted" in msg or "Invalid type" in msg:
            msg = f"{msg.split(' of type ')[0].replace('Value ', '')} is not {_expected(msg)}"
            return f"{key}: {msg}"
        if value is not None and str(value) not in msg:
            return f"{key}={value}: {msg}"
        return f"{key}: {msg}" if key and key not in msg else msg
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and getattr(err, "options", None):
        return f"{_first_line(err)} Available: {', '.join(err.options)}"
    return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip()) or type(err).__name__


def _expected(msg: str) -> str:
    for word, text in (("Integer", "an integer"), ("Float", "a number"), ("Boolean", "true or false"),
                       ("String", "a string")):
        if word in msg:
            return text
    return "of the expected type"


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
