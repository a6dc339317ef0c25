"""LibriSpeech (OpenSLR SLR12): archives or folders -> extracted subsets -> one manifest per subset.

In: a root folder, the subsets wanted, optionally a folder of archives or extracted subsets the
user already has, and a mirror to download the rest from. Out::

    root/<subset>.jsonl                 manifest; audio paths relative to root; written last, atomically
    root/<subset>.skipped.tsv           files left out of that manifest and why (only if there are some)
    root/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac + <spk>-<chapter>.trans.txt
    root/archives/<subset>.tar.gz       downloads, removed once extracted unless keep_archives
    root/lm/<file>                      OpenSLR SLR11 language-model files, when asked for

``prepare()`` handles each subset without a manifest: it uses an extracted folder if one exists
(in ``root`` or ``source``), else an archive verified against its published MD5 (in ``source`` or
``root/archives``), else downloads the archive (when ``download`` is on). Subsets are processed in
parallel; a second call finds the manifests and does nothing. ``manifests()`` only checks that the
manifests exist and says how to make the missing ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import logging
import os
import sys
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from asr.data.corpora.base import CorpusError
from asr.data.download import DownloadError, download, extract, verify
from asr.data.manifest import ManifestError, Problem, Utterance, from_librispeech, write_manifest
from asr.files import atomic_write
from asr.report import format_table

log = logging.getLogger(__name__)

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
LM_MD5: Mapping[str, str] = MappingProxyType({
    "3-gram.arpa.gz": "74cbb837e582378c26c602e1c8cbcb9c",
    "3-gram.pruned.1e-7.arpa.gz": "9a0f1325bcaf3a0f7b7be4be10823c2a",
    "3-gram.pruned.3e-7.arpa.gz": "8f67ec741827742eee05799ab7605b50",
    "4-gram.arpa.gz": "6abdcd5b055bd482e4f9defe91d40408",
    "librispeech-lexicon.txt": "28f72663f6bfed7cd346283c064c315b",
    "librispeech-vocab.txt": "bf3cc7a50112831ed8b0afa40cae96a5",
    "librispeech-lm-norm.txt.gz": "c83c64c726a1aedfe65f80aa311de402",
})
ACOUSTIC_RESOURCE, LM_RESOURCE = "12", "11"  # OpenSLR resource numbers
# Mirrors: https://us.openslr.org/resources, https://openslr.elda.org/resources, https://openslr.magicdatatech.com/resources
DEFAULT_MIRROR = "https://www.openslr.org/resources"
DEFAULT_ROOT = "data/librispeech"  # conf/data/librispeech.yaml: ${paths.data_dir}/librispeech
DEFAULT_LM_FILES = ("3-gram.pruned.1e-7.arpa.gz", "4-gram.arpa.gz", "librispeech-lexicon.txt", "librispeech-vocab.txt")
EVAL_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other")
# Named selections of subsets for the prepare command: training hours -> everything that recipe reads.
PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "960": ("train-clean-100", "train-clean-360", "train-other-500", *EVAL_SUBSETS),
    "100": ("train-clean-100", *EVAL_SUBSETS),
    "eval": EVAL_SUBSETS,
})
PREPARE_COMMAND = "python scripts/prepare_librispeech.py"
INNER = "LibriSpeech"  # the top folder inside every SLR12 archive
ARCHIVES, LM_DIR = "archives", "lm"


class LibriSpeechCorpus:
    """LibriSpeech subsets as manifests (see the module docstring for the layout).

    Args:
        root: where the corpus is prepared.
        subsets: SLR12 subset names (see SUBSET_MD5).
        source: a folder with archives (``<subset>.tar.gz``) or extracted subsets (``<subset>/`` or
            ``LibriSpeech/<subset>/``) you already have; extracted ones are used where they are.
        download: fetch what is neither in ``root`` nor in ``source`` from ``mirror``.
        mirror: base URL holding ``12/<subset>.tar.gz`` and ``11/<lm file>``.
        lm_files: SLR11 files to fetch into ``root/lm`` (see LM_MD5).
        keep_archives: keep downloaded archives after extraction (they take as much space again).
        workers: subsets fetched, extracted and indexed at the same time.
        checksums: MD5 per subset or LM file, instead of the published tables (for private mirrors).
        progress: show progress bars.
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, subsets: Sequence[str] = PRESETS["960"],
                 source: str | os.PathLike | None = None, download: bool = False, mirror: str = DEFAULT_MIRROR,
                 lm_files: Sequence[str] = (), keep_archives: bool = False, workers: int = 4,
                 checksums: Mapping[str, str] | None = None, progress: bool = True) -> None:
        self.checksums = dict(checksums) if checksums is not None else {**SUBSET_MD5, **LM_MD5}
        unknown = [s for s in [*subsets, *lm_files] if s not in self.checksums]
        if unknown:
            raise CorpusError(f"unknown LibriSpeech subset or LM file(s) {unknown}; known: "
                              f"{', '.join(sorted(SUBSET_MD5))}; LM: {', '.join(sorted(LM_MD5))}")
        self.root = Path(root)
        self.subsets = list(dict.fromkeys(subsets))
        self.source = Path(source) if source else None
        self.download = download
        self.mirror = mirror.rstrip("/")
        self.lm_files = list(lm_files)
        self.keep_archives = keep_archives
        self.workers = max(1, workers)
        self.progress = progress

    def manifest_path(self, subset: str) -> Path:
        return self.root / f"{subset}.jsonl"

    def manifests(self) -> dict[str, Path]:
        missing = [s for s in self.subsets if not self.manifest_path(s).is_file()]
        if missing:
            raise CorpusError(f"LibriSpeech is not prepared in {self.root}: no manifest for {', '.join(missing)}; "
                              f"prepare it with: {self.prepare_command(missing)}")
        return {s: self.manifest_path(s) for s in self.subsets}

    def prepare_command(self, subsets: Sequence[str]) -> str:
        names = next((name for name, preset in PRESETS.items() if list(preset) == list(subsets)), " ".join(subsets))
        source = f" --source {self.source}" if self.source else ""
        return f"{PREPARE_COMMAND} --root {self.root} --subsets {names}{source}"

    def prepare(self) -> dict[str, list[Problem]]:
        """Make every missing manifest (and LM file); return the files each new manifest left out.

        Raises:
            CorpusError: one line per subset that could not be prepared, with the reason.
        """
        todo = [s for s in self.subsets if not self.manifest_path(s).is_file()]
        todo_lm = [f for f in self.lm_files if not (self.root / LM_DIR / f).is_file()]
        if not todo and not todo_lm:
            return {}
        if not self.download:
            absent = [s for s in todo if self._extracted(s) is None and self._archive(s) is None]
            if todo_lm:
                raise CorpusError(f"LM file(s) {', '.join(todo_lm)} not in {self.root / LM_DIR}; fetch them with: "
                                  f"{PREPARE_COMMAND} --root {self.root} --subsets eval --lm {' '.join(todo_lm)}")
            if absent:
                raise CorpusError(f"LibriSpeech subset(s) {', '.join(absent)} not found in {self.root}"
                                  f"{f' or {self.source}' if self.source else ''} (no manifest, folder or archive); "
                                  f"prepare them with: {self.prepare_command(todo)}")
        # Downloads (threads) and extractions (processes: tarfile holds the GIL; on 2 free cores, 2
        # archives at once ran 1.8x faster in processes, 1.1x in threads: benchmarks/README.md) run
        # in parallel, one progress bar per file; then each manifest in turn, its header reads in
        # parallel threads.
        to_extract = [s for s in todo if self._extracted(s) is None]
        with contextlib.ExitStack() as stack:
            extractor = None
            if len(to_extract) > 1 and self.workers > 1:
                extractor = stack.enter_context(ProcessPoolExecutor(min(self.workers, len(to_extract)),
                                                                    mp_context=_extraction_context()))
            with ThreadPoolExecutor(self.workers) as pool:
                futures = {name: pool.submit(self._folder, name, row, extractor) for row, name in enumerate(todo)}
                futures |= {name: pool.submit(self._fetch_lm, name, len(todo) + row)
                            for row, name in enumerate(todo_lm)}
        problems, errors = {}, []
        for name, future in futures.items():
            try:
                folder = future.result()
                if folder is not None:
                    problems[name] = self._index(name, folder)
            except (CorpusError, DownloadError, ManifestError, OSError) as err:  # OSError: unreadable input
                errors.append(f"{name}: {err}")
        if errors:
            raise CorpusError("; ".join(errors))
        return problems

    def _folder(self, subset: str, row: int, extractor: Executor | None) -> Path:
        return self._extracted(subset) or self._extract(subset, row, extractor)

    def _index(self, subset: str, folder: Path) -> list[Problem]:
        """Write the subset's manifest from its extracted folder; return the files left out."""
        utterances, problems = from_librispeech(folder, progress=self.progress)
        self._write(subset, utterances, problems)
        hours = sum(u.duration for u in utterances) / 3600
        log.info("%s: %d utterances, %.2f h, %d skipped -> %s", subset, len(utterances), hours, len(problems),
                 self.manifest_path(subset))
        return problems

    def _extracted(self, subset: str) -> Path | None:
        candidates = [self.root / INNER / subset]
        if self.source:
            candidates += [self.source / INNER / subset, self.source / subset]
        return next((c for c in candidates if c.is_dir()), None)

    def _archive(self, subset: str) -> Path | None:
        name = f"{subset}.tar.gz"
        candidates = ([self.source / name] if self.source else []) + [self.root / ARCHIVES / name]
        return next((c for c in candidates if c.is_file()), None)

    def _extract(self, subset: str, row: int, extractor: Executor | None) -> Path:
        """Verify (or download) the subset's archive and unpack it into root/LibriSpeech/<subset>."""
        md5 = self.checksums[subset]
        archive = self._archive(subset)
        if archive is None:
            url = f"{self.mirror}/{ACOUSTIC_RESOURCE}/{subset}.tar.gz"
            archive = download(url, self.root / ARCHIVES / f"{subset}.tar.gz", md5, progress=self.progress,
                               position=row)
        else:  # an archive found on disk is checked before anything is taken from it
            verify(archive, md5)
        args = (archive, self.root / INNER / subset, f"{INNER}/{subset}", self.progress, row)
        try:
            folder = extractor.submit(extract, *args).result() if extractor else extract(*args)
        except BrokenExecutor:  # worker processes cannot start (e.g. a main module read from stdin)
            log.warning("extraction processes unavailable: extracting %s in this process", archive.name)
            folder = extract(*args)
        if not self.keep_archives and archive.parent == self.root / ARCHIVES:
            archive.unlink()
        return folder

    def _fetch_lm(self, name: str, row: int) -> None:
        url = f"{self.mirror}/{LM_RESOURCE}/{name}"
        download(url, self.root / LM_DIR / name, self.checksums[name], progress=self.progress, position=row)

    def _write(self, subset: str, utterances: list[Utterance], problems: list[Problem]) -> None:
        path = self.manifest_path(subset)
        skipped = path.with_suffix(".skipped.tsv")
        try:
            if problems:
                with atomic_write(skipped) as f:
                    f.writelines(f"{p.path}\t{p.reason}\n" for p in problems)
            else:
                skipped.unlink(missing_ok=True)
            write_manifest(path, utterances)  # last: its presence means the subset is ready
        except OSError as err:
            raise CorpusError(f"cannot write {path}: {err.strerror or err}; free some space or make "
                              f"{path.parent} writable (or choose another root)") from None


def _extraction_context() -> multiprocessing.context.BaseContext:
    """Worker processes forked from a server that has imported the extraction code once: safe
    beside this process's threads (unlike fork), and no per-worker import of torch (unlike spawn)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([extract.__module__])
    return context


def expand_subsets(names: Sequence[str]) -> list[str]:
    """Preset names (960, 100, eval) and subset names -> subset names, in order, once each."""
    return list(dict.fromkeys(s for name in names for s in PRESETS.get(name, (name,))))


def read_md5sums(path: str | os.PathLike) -> dict[str, str]:
    """An md5sum.txt (``<md5>  <file name>`` per line, as OpenSLR publishes) -> {subset or file: md5}."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CorpusError(f"{path}: {err.strerror or err}") from None
    table = {}
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 32:
                raise CorpusError(f"{path}:{lineno}: expected '<md5>  <file name>', got {line.strip()!r}")
            table[parts[1].lstrip("*").removesuffix(".tar.gz")] = parts[0].lower()
    return table


def summarize(manifest: Path) -> tuple[int, float]:
    """(utterances, hours) of a manifest, without resolving its paths."""
    count, seconds = 0, 0.0
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                count += 1
                seconds += json.loads(line)["duration"]
    return count, seconds / 3600


def prepare_main(argv: Sequence[str] | None = None) -> int:
    """``scripts/prepare_librispeech.py``: prepare, then print one row per subset."""
    parser = argparse.ArgumentParser(
        prog="prepare_librispeech.py",
        description="Download, verify (MD5), extract LibriSpeech and write one manifest per subset. "
                    "Run it again to finish an interrupted preparation; what is done is not redone.")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="where to prepare the corpus (default %(default)s; "
                                                             "training reads it from data.root)")
    parser.add_argument("--subsets", nargs="+", default=["960"], metavar="NAME",
                        help=f"presets {', '.join(f'{k} ({len(v)} subsets)' for k, v in PRESETS.items())}, or subset "
                             f"names ({', '.join(SUBSET_MD5)}); default 960")
    parser.add_argument("--source", help="a folder with archives (<subset>.tar.gz) or extracted subsets you already "
                                         "have; extracted ones are used where they are")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="base URL of OpenSLR resources (default %(default)s)")
    parser.add_argument("--no-download", action="store_true", help="use only what is in --root and --source")
    parser.add_argument("--lm", nargs="*", metavar="FILE", help="also fetch OpenSLR SLR11 LM files into <root>/lm "
                                                                f"(no names: {' '.join(DEFAULT_LM_FILES)})")
    parser.add_argument("--md5sums", help="an md5sum.txt ('<md5>  <file>' lines) to verify against instead of the "
                                          "published values (a mirror with its own archives)")
    parser.add_argument("--keep-archives", action="store_true", help="keep downloaded archives after extraction")
    parser.add_argument("--workers", type=int, default=4, help="subsets processed at once (default %(default)s)")
    args = parser.parse_args(argv)
    lm_files = [] if args.lm is None else (args.lm or list(DEFAULT_LM_FILES))
    try:
        checksums = {**SUBSET_MD5, **LM_MD5, **(read_md5sums(args.md5sums) if args.md5sums else {})}
        corpus = LibriSpeechCorpus(args.root, expand_subsets(args.subsets), args.source, not args.no_download,
                                   args.mirror, lm_files, args.keep_archives, args.workers, checksums)
        problems = corpus.prepare()
        manifests = corpus.manifests()
    except CorpusError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    for subset, items in problems.items():
        for p in items:
            print(f"{parser.prog}: {subset}: skipped {p.path}: {p.reason}", file=sys.stderr)
    rows = [[s, *summarize(m), len(problems.get(s, [])), str(m)] for s, m in manifests.items()]
    print(format_table(["subset", "utterances", "hours", "skipped now", "manifest"], rows))
    return 0
