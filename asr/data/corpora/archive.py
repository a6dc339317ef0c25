"""Corpora published as ``.tar.gz`` archives: archives -> extracted folders -> manifests.

What LibriSpeech, Mini LibriSpeech and AN4 share. A subclass names the archives it needs and,
for each, where it comes from (``url``), the folder inside it that holds the data (``inner``),
the manifests it makes (``splits``: one archive can make several) and how (``index``); also,
optionally, plain files fetched beside them (``files``: LibriSpeech's language models). This
class does the rest, the same way for every corpus. In: a root folder, optionally a folder of
archives or extracted folders the user already has (``source``), and a mirror to download the
rest from. Out::

    root/<split>.jsonl                 manifest; audio paths relative to root; written last, atomically
    root/<split>.skipped.tsv           files left out of that manifest and why (only if there are some)
    root/<inner>/...                   the extracted data (root/LibriSpeech/dev-clean, root/an4, ...)
    root/archives/<name>.tar.gz        downloads, removed once extracted unless keep_archives

``prepare()`` handles each archive whose manifests are missing: it uses an extracted folder if
one exists (in ``root`` or ``source``), else an archive verified against its checksum (in
``source`` or ``root/archives``), else downloads it (when ``download`` is on) with
:func:`asr.data.download.download` (resumable, MD5-checked, renamed into place once whole) and
unpacks it with :func:`asr.data.download.extract` (atomic). Archives are fetched and extracted in
parallel; a second call finds the manifests and does nothing. ``manifests()`` only checks that
the manifests exist and says how to make the missing ones.

An archive whose publisher gives no checksum (``None`` in ``checksums``) can only be checked for
completeness (the server's Content-Length, then a readable archive with the expected files); its
MD5 is logged so that it can be compared with a trusted copy and pinned (``checksums``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

from asr.data.corpora.base import CorpusError
from asr.data.download import DownloadError, download, extract, md5sum, verify
from asr.data.manifest import ManifestError, Problem, Utterance, write_manifest
from asr.files import atomic_write

log = logging.getLogger(__name__)

ARCHIVES = "archives"  # root/archives: where downloads wait to be extracted
ARCHIVE_SUFFIX = ".tar.gz"

Indexed = dict[str, tuple[list[Utterance], list[Problem]]]  # split -> (utterances, files left out)


class ArchiveCorpus:
    """Archives -> manifests (see the module docstring); subclasses implement the hooks below.

    Args:
        root: where the corpus is prepared.
        archives: names of the archives to prepare (the file is ``<name>.tar.gz``).
        source: a folder with archives or extracted folders you already have; extracted ones
            are used where they are.
        download: fetch what is neither in ``root`` nor in ``source`` from ``mirror``.
        mirror: base URL the hooks build download URLs from.
        files: plain files (not archives) to fetch too, by name.
        keep_archives: keep downloaded archives after extraction (they take as much space again).
        workers: archives fetched, extracted and indexed at the same time.
        checksums: MD5 of each archive and file by name; ``None`` where none is published.
        progress: show progress bars.
    """

    name = "corpus"  # in messages: "<name> is not prepared in <root>"
    unit = "archive"  # what one archive is called in messages
    split_label = "split"  # what one manifest is called in the prepare command's table
    default_root: str  # the prepare command's defaults
    default_mirror: str
    published_checksums: Mapping[str, str | None] = {}  # name -> MD5 as published (None: none is)

    def __init__(self, root: str | os.PathLike, archives: Sequence[str], source: str | os.PathLike | None = None,
                 download: bool = False, mirror: str = "", files: Sequence[str] = (), keep_archives: bool = False,
                 workers: int = 4, checksums: Mapping[str, str | None] | None = None, progress: bool = True) -> None:
        self.root = Path(root)
        self.archives = list(dict.fromkeys(archives))
        self.source = Path(source) if source else None
        self.download = download
        self.mirror = mirror.rstrip("/")
        self.files = list(files)
        self.keep_archives = keep_archives
        self.workers = max(1, workers)
        self.checksums = dict(checksums or {})
        self.progress = progress

    # --- hooks --------------------------------------------------------------------------------
    def url(self, archive: str) -> str:
        """Where to download ``archive`` from."""
        raise NotImplementedError

    def inner(self, archive: str) -> str:
        """The folder inside the archive that holds the data; it is extracted to ``root/<inner>``."""
        raise NotImplementedError

    def splits(self, archive: str) -> list[str]:
        """The manifests ``archive`` makes (default: one, named after it)."""
        return [archive]

    def index(self, archive: str, folder: Path) -> Indexed:
        """An extracted folder -> utterances and files left out, per split of ``archive``."""
        raise NotImplementedError

    def prepare_command(self, archives: Sequence[str]) -> str:
        """The command line that prepares ``archives``, for messages."""
        raise NotImplementedError

    def file_url(self, name: str) -> str:
        raise NotImplementedError

    def file_path(self, name: str) -> Path:
        return self.root / name

    def missing_files_message(self, names: Sequence[str]) -> str:
        return f"{', '.join(names)} not in {self.root}; fetch them with: {self.prepare_command(self.archives)}"

    def stale(self, archive: str) -> bool:
        """Whether ``archive`` must be (re)indexed: by default, when one of its manifests is missing."""
        return any(not self.manifest_path(s).is_file() for s in self.splits(archive))

    # --- the corpus interface -----------------------------------------------------------------
    def manifest_path(self, split: str) -> Path:
        return self.root / f"{split}.jsonl"

    def manifests(self) -> dict[str, Path]:
        splits = [s for a in self.archives for s in self.splits(a)]
        missing = [s for s in splits if not self.manifest_path(s).is_file()]
        if missing:
            todo = [a for a in self.archives if set(self.splits(a)) & set(missing)]
            raise CorpusError(f"{self.name} is not prepared in {self.root}: no manifest for {', '.join(missing)}; "
                              f"prepare it with: {self.prepare_command(todo)}")
        return {s: self.manifest_path(s) for s in splits}

    def prepare(self) -> dict[str, list[Problem]]:
        """Make every missing manifest (and file); return the files each new manifest left out.

        Raises:
            CorpusError: one line naming each archive or file that could not be prepared, and why.
        """
        todo = [a for a in self.archives if self.stale(a)]
        todo_files = [f for f in self.files if not self.file_path(f).is_file()]
        if not todo and not todo_files:
            return {}
        if not self.download:
            if todo_files:
                raise CorpusError(self.missing_files_message(todo_files))
            absent = [a for a in todo if self._extracted(a) is None and self._archive(a) is None]
            if absent:
                raise CorpusError(f"{self.name} {self.unit}(s) {', '.join(absent)} not found in {self.root}"
                                  f"{f' or {self.source}' if self.source else ''} (no manifest, folder or archive); "
                                  f"prepare them with: {self.prepare_command(todo)}")
        # Downloads (threads) and extractions (processes: tarfile holds the GIL; on 2 free cores, 2
        # archives at once ran 1.8x faster in processes, 1.1x in threads: benchmarks/README.md) run
        # in parallel, one progress bar per file; then each archive's manifests in turn, their header
        # reads in parallel threads.
        to_extract = [a for a in todo if self._extracted(a) is None]
        with contextlib.ExitStack() as stack:
            extractor = None
            if len(to_extract) > 1 and self.workers > 1:
                extractor = stack.enter_context(ProcessPoolExecutor(min(self.workers, len(to_extract)),
                                                                    mp_context=_extraction_context()))
            with ThreadPoolExecutor(self.workers) as pool:
                futures = {name: pool.submit(self._folder, name, row, extractor) for row, name in enumerate(todo)}
                fetches = {name: pool.submit(self._fetch_file, name, len(todo) + row)
                           for row, name in enumerate(todo_files)}
        problems, errors = {}, []
        for name, future in [*futures.items(), *fetches.items()]:
            try:
                folder = future.result()
                if folder is not None:
                    problems |= self._index(name, folder)
            except (CorpusError, DownloadError, ManifestError, OSError) as err:  # OSError: unreadable input
                errors.append(f"{name}: {err}")
        if errors:
            raise CorpusError("; ".join(errors))
        return problems

    # --- the work -----------------------------------------------------------------------------
    def _folder(self, archive: str, row: int, extractor: Executor | None) -> Path:
        return self._extracted(archive) or self._extract(archive, row, extractor)

    def _index(self, archive: str, folder: Path) -> dict[str, list[Problem]]:
        """Write the archive's manifests from its extracted folder; return the files each left out."""
        problems = {}
        for split, (utterances, left_out) in self.index(archive, folder).items():
            self._write(split, utterances, left_out)
            hours = sum(u.duration for u in utterances) / 3600
            log.info("%s: %d utterances, %.2f h, %d skipped -> %s", split, len(utterances), hours, len(left_out),
                     self.manifest_path(split))
            problems[split] = left_out
        return problems

    def _extracted(self, archive: str) -> Path | None:
        inner = Path(self.inner(archive))
        candidates = [self.root / inner]
        if self.source:
            candidates += [self.source / inner, self.source / inner.name]
        return next((c for c in candidates if c.is_dir()), None)

    def _archive(self, archive: str) -> Path | None:
        name = archive + ARCHIVE_SUFFIX
        candidates = ([self.source / name] if self.source else []) + [self.root / ARCHIVES / name]
        return next((c for c in candidates if c.is_file()), None)

    def _extract(self, archive: str, row: int, extractor: Executor | None) -> Path:
        """Verify (or download) the archive and unpack its inner folder into ``root/<inner>``."""
        md5 = self.checksums.get(archive)
        path = self._archive(archive)
        if path is None:
            path = download(self.url(archive), self.root / ARCHIVES / (archive + ARCHIVE_SUFFIX), md5,
                            progress=self.progress, position=row)
        else:  # an archive found on disk is checked before anything is taken from it
            verify(path, md5)
        if md5 is None:
            log.warning("%s: no published checksum to verify it against; its MD5 is %s: compare it with a trusted "
                        "copy, and pin it to check future downloads (--md5sums)", path.name, md5sum(path))
        args = (path, self.root / self.inner(archive), self.inner(archive), self.progress, row)
        try:
            folder = extractor.submit(extract, *args).result() if extractor else extract(*args)
        except BrokenExecutor:  # worker processes cannot start (e.g. a main module read from stdin)
            log.warning("extraction processes unavailable: extracting %s in this process", path.name)
            folder = extract(*args)
        if not self.keep_archives and path.parent == self.root / ARCHIVES:
            path.unlink()
        return folder

    def _fetch_file(self, name: str, row: int) -> None:
        download(self.file_url(name), self.file_path(name), self.checksums.get(name), progress=self.progress,
                 position=row)

    def _write(self, split: str, utterances: list[Utterance], problems: list[Problem]) -> None:
        path = self.manifest_path(split)
        skipped = path.with_suffix(".skipped.tsv")
        try:
            if problems:
                with atomic_write(skipped) as f:
                    f.writelines(f"{p.path}\t{p.reason}\n" for p in problems)
            else:
                skipped.unlink(missing_ok=True)
            write_manifest(path, utterances)  # last: its presence means the split is ready
        except OSError as err:
            raise CorpusError(f"cannot write {path}: {err.strerror or err}; free some space or make "
                              f"{path.parent} writable (or choose another root)") from None


def _extraction_context() -> multiprocessing.context.BaseContext:
    """Worker processes forked from a server that has imported the extraction code once: safe
    beside this process's threads (unlike fork), and no per-worker import of torch (unlike spawn)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([extract.__module__])
    return context


def read_md5sums(path: str | os.PathLike) -> dict[str, str]:
    """An md5sum.txt (``<md5>  <file name>`` per line, as OpenSLR publishes) -> {archive or file: md5}."""
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
            table[parts[1].lstrip("*").removesuffix(ARCHIVE_SUFFIX)] = parts[0].lower()
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
