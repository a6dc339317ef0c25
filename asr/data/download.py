"""Fetching corpus files: a URL -> a complete, MD5-verified file; a ``.tar.gz`` -> an extracted folder.

``download(url, path, md5)`` streams into ``<path>.part`` and resumes an interrupted transfer with
an HTTP ``Range`` request, both within one call (it reconnects after a dropped connection) and
across runs (the ``.part`` file stays). The MD5 is computed while the bytes arrive (a resumed
part is hashed first), and the file takes its final name only once the digest matches, so a file
under its final name is always complete and verified; a mismatch deletes the partial file.

``extract(archive, dest, inner)`` unpacks into a hidden folder beside ``dest`` and renames the
result into place: an interrupted or failed extraction (full disk, no permission) leaves nothing
that looks finished, and a second call finds ``dest`` and returns at once.

Errors a user can act on are :class:`DownloadError` (and :class:`ChecksumError`) with one line
naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # bytes read, written and hashed at a time
RETRIES = 5  # reconnections per file within one call; each resumes where the last one stopped
RETRY_WAIT_S = 2.0  # wait before the first reconnection, doubled after each
TIMEOUT_S = 60.0  # socket timeout of a stalled connection
USER_AGENT = "asr-prepare/1"  # some mirrors refuse Python's default agent
PART_SUFFIX = ".part"
# Network failures worth a reconnection (a full disk or a bad path is not one of them).
_TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, TimeoutError,
              urllib.error.URLError)


class DownloadError(RuntimeError):
    """A file that could not be fetched or unpacked; the message names it and what to do."""


class ChecksumError(DownloadError):
    """A file whose MD5 is not the published one."""


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 digest of a file, read in CHUNK_BYTES blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, md5: str | None) -> None:
    """Raise ChecksumError unless ``path`` has the MD5 ``md5`` (``None`` accepts any file)."""
    if md5 is None:
        return
    actual = md5sum(path)
    if actual != md5.lower():
        raise ChecksumError(f"{path}: MD5 {actual} is not the published {md5}: the file is corrupt or incomplete; "
                            "delete it and run again to download it afresh")


def download(url: str, path: str | os.PathLike, md5: str | None = None, retries: int = RETRIES,
             timeout: float = TIMEOUT_S, progress: bool = True, position: int | None = None) -> Path:
    """Fetch ``url`` into ``path`` unless a verified file is already there; return ``path``.

    Raises:
        ChecksumError: the downloaded (or existing) file does not have the MD5 ``md5``.
        DownloadError: the server refused the file, the connection kept failing, or the file
            could not be written.
    """
    path = Path(path)
    if path.is_file():
        verify(path, md5)
        return path
    part = path.with_name(path.name + PART_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = _fetch_with_retries(url, part, retries, timeout, dict(disable=not progress, position=position))
    except _TRANSIENT as err:
        raise DownloadError(f"{url}: {_reason(err)} after {retries + 1} attempt(s); {part.name} keeps what "
                            "arrived: run again to resume, or choose another mirror") from None
    except OSError as err:
        raise DownloadError(f"cannot write {part}: {err.strerror or err}; free some space or choose another "
                            "folder") from None
    if md5 is not None and digest != md5.lower():
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: the download's MD5 {digest} is not the published {md5}; it was deleted and "
                            "never used: run again, or choose another mirror")
    os.replace(part, path)
    return path


def _fetch_with_retries(url: str, part: Path, retries: int, timeout: float, bar_options: dict[str, Any]) -> str:
    """Bring ``part`` to the full length of ``url``; return its MD5."""
    wait = RETRY_WAIT_S
    for attempt in range(retries + 1):
        try:
            return _fetch(url, part, timeout, bar_options)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check the mirror URL") from None
        except _TRANSIENT as err:
            if attempt == retries:
                raise
            log.warning("%s: %s; resuming in %.0f s (%d/%d)", url, _reason(err), wait, attempt + 1, retries)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def _fetch(url: str, part: Path, timeout: float, bar_options: dict[str, Any]) -> str:
    """One connection: continue ``part`` from its current size (or restart it) to the end."""
    digest = hashlib.md5(usedforsecurity=False)
    offset = part.stat().st_size if part.is_file() else 0
    if offset:
        with open(part, "rb") as f:  # the bytes already here count towards the digest
            while block := f.read(CHUNK_BYTES):
                digest.update(block)
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the part is already whole
            return digest.hexdigest()
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset, digest = 0, hashlib.md5(usedforsecurity=False)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[: -len(PART_SUFFIX)],
                leave=False, **bar_options) as bar:
            while block := response.read(CHUNK_BYTES):
                f.write(block)
                digest.update(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    return digest.hexdigest()


def _reason(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed before the end of the file"
    if isinstance(err, urllib.error.URLError):
        return f"cannot connect ({err.reason})"
    return str(err) or type(err).__name__


def extract(archive: str | os.PathLike, dest: str | os.PathLike, inner: str | None = None, progress: bool = True,
            position: int | None = None) -> Path:
    """Unpack ``archive`` (``.tar``, ``.tar.gz``) so that ``dest`` holds its folder ``inner`` (or the
    whole archive); return ``dest``. Nothing is written outside the hidden work folder until the
    archive is fully unpacked; then one rename puts ``dest`` in place.

    Raises:
        DownloadError: the archive is unreadable, lacks ``inner``, or the disk refused a write.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    work = dest.parent / f".{dest.name}.extracting-{os.getpid()}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _unpack(archive, work, inner.strip("/") + "/" if inner else "", dict(disable=not progress, position=position))
        source = work / inner if inner else work
        if not source.is_dir():
            raise DownloadError(f"{archive}: no {inner}/ inside; is it the right archive?")
        os.replace(source, dest)
    except (tarfile.TarError, EOFError) as err:
        raise DownloadError(f"{archive}: not a readable archive ({err}); delete it and run again") from None
    except OSError as err:
        raise DownloadError(f"cannot extract {archive} into {dest.parent}: {err.strerror or err}; free some space "
                            "or choose another folder") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return dest


def _unpack(archive: Path, work: Path, prefix: str, bar_options: dict[str, Any]) -> None:
    """Extract the members under ``prefix`` in one sequential pass (random access into a .gz would
    decompress it again from the start); the bar counts compressed bytes read."""
    with open(archive, "rb") as raw, tqdm.wrapattr(raw, "read", total=archive.stat().st_size, leave=False,
                                                  desc=f"extracting {archive.name}", **bar_options) as f:
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if not prefix or member.name.startswith(prefix) or member.name + "/" == prefix:
                    tar.extract(member, work, filter="data")  # "data": no absolute paths, links out or devices
