"""LibriSpeech (OpenSLR SLR12) and Mini LibriSpeech (SLR31): archives or folders -> extracted
subsets -> one manifest per subset.

In: a root folder, the subsets wanted, optionally a folder of archives or extracted subsets the
user already has, and a mirror to download the rest from. Out::

    root/<subset>.jsonl                 manifest; audio paths relative to root; written last, atomically
    root/<subset>.skipped.tsv           files left out of that manifest and why (only if there are some)
    root/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt
    root/archives/<subset>.tar.gz       downloads, removed once extracted unless keep_archives
    root/lm/<file>                      OpenSLR SLR11 language-model files, when asked for

How archives are found, verified against their published MD5, downloaded and extracted is
:class:`asr.data.corpora.archive.ArchiveCorpus` (shared with AN4): subsets are processed in
parallel, and a second call finds the manifests and does nothing.

Mini LibriSpeech is SLR31's train-clean-5 and dev-clean-2 (332 MB and 126 MB of archives), in
LibriSpeech's layout; it has no test set, so :class:`MiniLibriSpeechCorpus` takes SLR12's
test-clean as its test set by default. Both classes accept the subsets of both resources.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from asr.data.corpora.archive import ArchiveCorpus, Indexed
from asr.data.corpora.base import CorpusError
from asr.data.manifest import from_librispeech

# MD5 of each archive as published by OpenSLR: https://www.openslr.org/resources/12/md5sum.txt (SLR12;
# the same values appear in many independent copies, e.g. PaddlePaddle/DeepSpeech and
# sdrobert/pytorch-database-prep) and for SLR11 the table in sdrobert/pytorch-database-prep's
# librispeech.py (FILE2MD5), whose librispeech-lm-norm value matches a second copy (thu-spmi/CAT).
SUBSET_MD5: Mapping[str, str] = MappingProxyType({
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
})
# SLR31, as published in https://www.openslr.org/resources/31/md5sum.txt; the same values are in
# PaddlePaddle/PaddleSpeech (dataset/mini_librispeech/mini_librispeech.py) and in several
# independent download scripts (which also give the sizes: 332,954,390 and 126,046,265 bytes).
MINI_SUBSET_MD5: Mapping[str, str] = MappingProxyType({
    "train-clean-5": "5df7d4e78065366204ca6845bb08f490",
    "dev-clean-2": "6d7ab67ac6a1d2c993d050e16d61080d",
})
LM_MD5: Mapping[str, str] = MappingProxyType({
    "3-gram.arpa.gz": "74cbb837e582378c26c602e1c8cbcb9c",
    "3-gram.pruned.1e-7.arpa.gz": "9a0f1325bcaf3a0f7b7be4be10823c2a",
    "3-gram.pruned.3e-7.arpa.gz": "8f67ec741827742eee05799ab7605b50",
    "4-gram.arpa.gz": "6abdcd5b055bd482e4f9defe91d40408",
    "librispeech-lexicon.txt": "28f72663f6bfed7cd346283c064c315b",
    "librispeech-vocab.txt": "bf3cc7a50112831ed8b0afa40cae96a5",
    "librispeech-lm-norm.txt.gz": "c83c64c726a1aedfe65f80aa311de402",
})
ACOUSTIC_RESOURCE, MINI_RESOURCE, LM_RESOURCE = "12", "31", "11"  # OpenSLR resource numbers
RESOURCE: Mapping[str, str] = MappingProxyType({**{s: ACOUSTIC_RESOURCE for s in SUBSET_MD5},
                                                **{s: MINI_RESOURCE for s in MINI_SUBSET_MD5}})
# Mirrors: https://us.openslr.org/resources, https://openslr.elda.org/resources, https://openslr.magicdatatech.com/resources
DEFAULT_MIRROR = "https://www.openslr.org/resources"
DEFAULT_ROOT = "data/librispeech"  # asr/conf/data/librispeech.yaml: ${paths.data_dir}/librispeech
MINI_ROOT = "data/mini_librispeech"  # asr/conf/data/mini_librispeech.yaml
DEFAULT_LM_FILES = ("3-gram.pruned.1e-7.arpa.gz", "4-gram.arpa.gz", "librispeech-lexicon.txt", "librispeech-vocab.txt")
EVAL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
# Named selections of subsets for the prepare command: training hours -> everything that recipe reads.
PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "960": ("train-clean-100", "train-clean-360", "train-other-500", *EVAL_SUBSETS),
    "100": ("train-clean-100", *EVAL_SUBSETS),
    "eval": EVAL_SUBSETS,
})
MINI_PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType({"mini": ("train-clean-5", "dev-clean-2", "test-clean")})
INNER = "LibriSpeech"  # the top folder inside every SLR12 and SLR31 archive
LM_DIR = "lm"


class LibriSpeechCorpus(ArchiveCorpus):
    """LibriSpeech subsets as manifests (see the module docstring for the layout).

    Args:
        root: where the corpus is prepared.
        subsets: subset or preset names (see SUBSET_MD5, MINI_SUBSET_MD5, PRESETS).
        source: a folder with archives (``<subset>.tar.gz``) or extracted subsets (``<subset>/`` or
            ``LibriSpeech/<subset>/``) you already have; extracted ones are used where they are.
        download: fetch what is neither in ``root`` nor in ``source`` from ``mirror``.
        mirror: base URL holding ``12/<subset>.tar.gz``, ``31/<subset>.tar.gz`` and ``11/<lm file>``.
        lm_files: SLR11 files to fetch into ``root/lm`` (see LM_MD5).
        keep_archives: keep downloaded archives after extraction (they take as much space again).
        workers: subsets fetched, extracted and indexed at the same time.
        checksums: MD5 per subset or LM file, instead of the published tables (for private mirrors).
        progress: show progress bars.
    """

    name = "LibriSpeech"
    unit = split_label = "subset"
    command = "python scripts/prepare_librispeech.py"  # = python scripts/prepare.py librispeech
    default_root = DEFAULT_ROOT
    default_mirror = DEFAULT_MIRROR
    presets = PRESETS  # the first one is the prepare command's default
    published_checksums: Mapping[str, str | None] = MappingProxyType({**SUBSET_MD5, **MINI_SUBSET_MD5, **LM_MD5})

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, subsets: Sequence[str] = PRESETS["960"],
                 source: str | os.PathLike | None = None, download: bool = False, mirror: str = DEFAULT_MIRROR,
                 lm_files: Sequence[str] = (), keep_archives: bool = False, workers: int = 4,
                 checksums: Mapping[str, str] | None = None, progress: bool = True) -> None:
        checksums = dict(checksums) if checksums is not None else dict(self.published_checksums)
        subsets = self.expand(subsets)
        unknown = [s for s in [*subsets, *lm_files] if s not in checksums]
        if unknown:
            raise CorpusError(f"unknown {self.name} subset or LM file(s) {unknown}; known: "
                              f"{', '.join(sorted(RESOURCE))}; LM: {', '.join(sorted(LM_MD5))}")
        super().__init__(root, subsets, source, download, mirror, lm_files, keep_archives, workers, checksums,
                         progress)

    @property
    def subsets(self) -> list[str]:
        return self.archives

    @classmethod
    def expand(cls, names: Sequence[str]) -> list[str]:
        """Preset names and subset names -> subset names, in order, once each."""
        return list(dict.fromkeys(s for name in names for s in cls.presets.get(name, (name,))))

    def url(self, subset: str) -> str:
        return f"{self.mirror}/{RESOURCE.get(subset, ACOUSTIC_RESOURCE)}/{subset}.tar.gz"

    def inner(self, subset: str) -> str:
        return f"{INNER}/{subset}"

    def index(self, subset: str, folder: Path) -> Indexed:
        return {subset: from_librispeech(folder, progress=self.progress)}

    def prepare_command(self, subsets: Sequence[str]) -> str:
        names = next((name for name, preset in self.presets.items() if list(preset) == list(subsets)),
                     " ".join(subsets))
        source = f" --source {self.source}" if self.source else ""
        return f"{self.command} --root {self.root} --subsets {names}{source}"

    def file_url(self, name: str) -> str:
        return f"{self.mirror}/{LM_RESOURCE}/{name}"

    def file_path(self, name: str) -> Path:
        return self.root / LM_DIR / name

    def missing_files_message(self, names: Sequence[str]) -> str:
        return (f"LM file(s) {', '.join(names)} not in {self.root / LM_DIR}; fetch them with: "
                f"{self.prepare_command(self.subsets)} --lm {' '.join(names)}")

    # --- scripts/prepare.py -------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The options of ``prepare.py librispeech`` beyond the common ones."""
        parser.add_argument("--subsets", nargs="+", default=[next(iter(cls.presets))], metavar="NAME",
                            help=f"presets {', '.join(f'{k} ({len(v)} subsets)' for k, v in cls.presets.items())}, "
                                 f"or subset names ({', '.join(RESOURCE)}); default {next(iter(cls.presets))}")
        parser.add_argument("--lm", nargs="*", metavar="FILE",
                            help="also fetch OpenSLR SLR11 LM files into <root>/lm "
                                 f"(no names: {' '.join(DEFAULT_LM_FILES)})")
        parser.add_argument("--workers", type=int, default=4, help="subsets processed at once (default %(default)s)")

    @classmethod
    def options(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The keyword arguments of the constructor that ``add_arguments``'s options set."""
        lm_files = [] if args.lm is None else (args.lm or list(DEFAULT_LM_FILES))
        return dict(subsets=args.subsets, lm_files=lm_files, workers=args.workers)


class MiniLibriSpeechCorpus(LibriSpeechCorpus):
    """Mini LibriSpeech (SLR31): train-clean-5 and dev-clean-2, and SLR12's test-clean as the test
    set; arguments as :class:`LibriSpeechCorpus`."""

    name = "Mini LibriSpeech"
    command = "python scripts/prepare.py mini_librispeech"
    default_root = MINI_ROOT
    presets = MINI_PRESETS

    def __init__(self, root: str | os.PathLike = MINI_ROOT, subsets: Sequence[str] = MINI_PRESETS["mini"],
                 **options: Any) -> None:
        super().__init__(root, subsets, **options)
