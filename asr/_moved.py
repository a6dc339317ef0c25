"""Old import paths -> the modules' homes in the wings: ``import asr.features`` still gives ``asr.model.features``.

asr 0.1 was one flat package; its modules now live in wings by stage (``asr/model``, ``asr/training``,
``asr/inference``, ...). Each old path below names the same module object as its new path (classes
compare equal, state is shared), with a DeprecationWarning naming the new one. Installed by
``asr/__init__.py`` as a meta path finder; it imports nothing until an old path is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "asr.features": "asr.model.features", "asr.lstm": "asr.model.lstm", "asr.checkpoint": "asr.model.checkpoint",
    "asr.module": "asr.training.module", "asr.train": "asr.training.train", "asr.callbacks": "asr.training.callbacks",
    "asr.optim": "asr.training.optim", "asr.loggers": "asr.training.loggers",
    "asr.checkpoint_io": "asr.training.checkpoints", "asr.transcribe": "asr.inference.recognizer",
    "asr.emitters": "asr.inference.emitters", "asr.export": "asr.inference.export",
    "asr.windows": "asr.inference.windows", "asr.alignment": "asr.inference.alignment",
    "asr.writers": "asr.inference.writers", "asr.evaluate": "asr.inference.evaluate",
    "asr.tuning": "asr.inference.tuning",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module of its new path."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(f"{spec.name} has moved to {self.target}; import it from there (the old path will go)")
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on it: give it back its own


class MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (and nothing else)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return importlib.util.spec_from_loader(fullname, _Alias(new)) if new else None


def _warn(message: str) -> None:
    """A DeprecationWarning attributed to the code that imported the old path (not to importlib)."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return
    warnings.warn_explicit(message, DeprecationWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"),
                           registry=frame.f_globals.setdefault("__warningregistry__", {}))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
