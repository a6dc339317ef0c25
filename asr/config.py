"""Config schemas from code: dataclasses and constructor signatures -> Hydra structured configs; errors -> one line.

Every default lives in code, once: in a stage's dataclass (``FeatureConfig``, ``ModelConfig``, ...)
or in a constructor's signature (each corpus, the data module, the text normalizer), from which
:func:`signature_schema` derives a dataclass for Hydra and OmegaConf to check. :func:`typed` checks
values against a schema and builds the dataclass (running its ``__post_init__``); every failure is
one :class:`ConfigError` line naming the key, the value and what is allowed, and
:func:`config_error` words Hydra's and OmegaConf's multi-line errors that way. The training run's
own schema and checks are :mod:`asr.training.config`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value that cannot work: one line naming the key, the value and what is allowed."""


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


def typed(schema: type, values: Any, key: str) -> Any:
    """``values`` (a mapping) checked against ``schema`` and built into its dataclass, which runs
    its ``__post_init__`` checks. Raises ConfigError naming ``key.<field>``."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ConfigError(config_error(err, prefix=key)) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}.{first_line(err)}" if key else first_line(err)) from None


# --- wording of errors -------------------------------------------------------------------------------


def first_line(err: BaseException) -> str:
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
        msg = first_line(Exception(cause.msg)).replace("Schema'", "'")
        value = getattr(cause, "value", None)
        if "could not be converted" in msg or "Invalid type" in msg:
            msg = f"{msg.split(' of type ')[0].replace('Value ', '')} is not {_expected(msg)}"
            return f"{key}: {msg}"
        if value is not None and str(value) not in msg:
            return f"{key}={value}: {msg}"
        return f"{key}: {msg}" if key and key not in msg else msg
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and getattr(err, "options", None):
        return f"{first_line(err)} Available: {', '.join(err.options)}"
    return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip()) or type(err).__name__


def _expected(msg: str) -> str:
    for word, text in (("Integer", "an integer"), ("Float", "a number"), ("Boolean", "true or false"),
                       ("String", "a string")):
        if word in msg:
            return text
    return "of the expected type"
