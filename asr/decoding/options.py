"""Decoding options: every knob of greedy and beam decoding, checked once, and the file tune_lm.py stores.

:class:`DecodeOptions` holds every knob, is validated once with messages that name the option,
and is what ``scripts/tune_lm.py`` stores beside a checkpoint (:func:`save_options`) for
``asr.load`` and ``scripts/decode.py`` to pick up (:func:`stored_options`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asr.files import atomic_write

DECODERS = ("greedy", "beam")
LM_UNITS = ("auto", "word", "char")
OPTIONS_SUFFIX = ".decoding.json"  # tuned options live beside the checkpoint: last.ckpt -> last.decoding.json
_PATH_FIELDS = ("lm", "lexicon")


class DecodeOptionsError(ValueError):
    """Decoding options that cannot work; the message names the option and the fix."""


@dataclass(frozen=True)
class DecodeOptions:
    """How log-probs become text. Validated on construction (DecodeOptionsError)."""

    decoder: str = "greedy"  # "greedy" or "beam"
    beam_size: int = 50  # hypotheses kept after each frame (beam)
    beam_size_token: int | None = None  # symbols tried per frame; None = all of them
    beam_threshold: float = 25.0  # drop hypotheses scoring this much (log) below the best
    lm: str | None = None  # KenLM n-gram: ARPA (.arpa, .arpa.gz) or binary file; None = no LM
    lexicon: str | None = None  # words (one per line, or "word t o k e n s"); None = the LM's words
    lm_unit: str = "auto"  # what the LM's tokens are: "word", "char", or "auto" (read from the ARPA)
    lm_weight: float = 0.5  # weight of the LM's log10-probs (alpha); tune with scripts/tune_lm.py
    word_score: float = 0.0  # bonus per word (beta); lexicon-free (char LM): per frame of space, held frames too
    # A pause this long (seconds of blank) between two symbols ends a word even if the model emitted no
    # space there. Off (0) by default: it splits words on single utterances (+1 WER point on the
    # synthetic test set at 0.5 s), and long recordings already get a space at each pause where they
    # are cut (asr.windows).
    word_pause: float = 0.0
    # How hypotheses that reach the same search state are merged: False keeps the better one (Viterbi:
    # with lm_weight 0 and word_score 0 the search then returns greedy's path); True adds their
    # probabilities (closer to CTC's sum over alignments).
    log_add: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.log_add, bool):
            raise DecodeOptionsError(f"--log-add must be true or false, got {self.log_add!r}")
        if self.decoder not in DECODERS:
            raise DecodeOptionsError(f"--decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.lm_unit not in LM_UNITS:
            raise DecodeOptionsError(f"--lm-unit must be one of {', '.join(LM_UNITS)}, got {self.lm_unit!r}")
        if self.beam_size < 1:
            raise DecodeOptionsError(f"--beam-size must be at least 1, got {self.beam_size}")
        if self.beam_size_token is not None and self.beam_size_token < 1:
            raise DecodeOptionsError(f"--beam-size-token must be at least 1, got {self.beam_size_token}")
        for name in ("beam_threshold", "lm_weight", "word_score", "word_pause"):
            if not math.isfinite(getattr(self, name)):
                raise DecodeOptionsError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(self, name)}")
        if self.word_pause < 0:
            raise DecodeOptionsError(f"--word-pause must be 0 (off) or a positive number of seconds, got {self.word_pause}")
        if self.beam_threshold <= 0:
            raise DecodeOptionsError(f"--beam-threshold must be positive, got {self.beam_threshold}")
        if self.decoder == "greedy" and (self.lm or self.lexicon):
            raise DecodeOptionsError("--lm and --lexicon need --decoder beam (greedy decoding uses no LM)")
        if self.lm_unit == "char" and self.lexicon:
            raise DecodeOptionsError("--lexicon cannot be used with a character LM (--lm-unit char): "
                                     "lexicon-free search scores every symbol with the LM")

    def replace(self, **changes: Any) -> DecodeOptions:
        """A copy with ``changes`` (None values are ignored), validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "options") -> DecodeOptions:
        from asr.config import ConfigError, signature_schema, typed  # the schema of every config in asr

        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise DecodeOptionsError(f"{source}: unknown decoding option(s) {', '.join(unknown)}")
        try:  # types first (a number given as text), then __post_init__'s ranges
            checked = typed(signature_schema(cls, target=False), d, "")
        except ConfigError as err:
            raise DecodeOptionsError(f"{source}: {err}") from None
        return cls(**dataclasses.asdict(checked))



def options_path(checkpoint: str | os.PathLike) -> Path:
    """Where the tuned decoding options of a checkpoint live: ``last.ckpt`` -> ``last.decoding.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + OPTIONS_SUFFIX)


def save_options(options: DecodeOptions, path: str | os.PathLike, **extra: Any) -> Path:
    """Write options as JSON (paths relative to the file's folder when inside it), plus ``extra``
    facts (how they were tuned) under ``"tuning"``."""
    path = Path(path)
    data = options.to_dict()
    for name in _PATH_FIELDS:
        if data[name]:
            target = Path(data[name]).resolve()
            folder = path.parent.resolve()
            data[name] = str(target.relative_to(folder)) if target.is_relative_to(folder) else str(target)
    with atomic_write(path) as f:
        json.dump({"decoding": data, **({"tuning": extra} if extra else {})}, f, indent=2)
        f.write("\n")
    return path


def load_options(path: str | os.PathLike) -> DecodeOptions:
    """Read options written by :func:`save_options` (or a JSON/YAML file with the same fields)."""
    path = Path(path)
    if not path.is_file():
        raise DecodeOptionsError(f"{path}: decoding options file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except ValueError as err:
        raise DecodeOptionsError(f"{path}: not valid {path.suffix[1:].upper()} ({err})") from None
    data = data.get("decoding", data) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise DecodeOptionsError(f"{path}: expected a mapping of decoding options")
    for name in _PATH_FIELDS:
        if data.get(name) and not os.path.isabs(data[name]):
            data[name] = str(path.parent / data[name])
    return DecodeOptions.from_dict(data, str(path))


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(str(err).splitlines()[0]) from None


def stored_options(checkpoint: str | os.PathLike) -> DecodeOptions | None:
    """The options tuned for ``checkpoint`` (``options_path``), or None if it has none."""
    path = options_path(checkpoint)
    return load_options(path) if path.is_file() else None
