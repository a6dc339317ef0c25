"""Where shards live: local paths, globs, brace ranges and URLs (HTTP(S), s3://, gs://) -> shard files.

A shard spec (``data.corpus.splits.train``) names the shards: ``/data/ls/{000000..000479}.tar``, ``/data/ls/*.tar``,
``https://host/ls/{000000..000479}.tar``, ``s3://bucket/ls/`` (a folder: all its index's shards), or a
list of those. The shards must share one folder, where ``scripts/shard.py`` wrote the index.
Remote files go through fsspec (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``: ``pip install
'asr[s3]'`` or ``'asr[gcs]'``), whose credentials are read the standard way of each (AWS_* variables,
~/.aws, instance roles; Google's application default credentials); ``data.corpus.storage_options`` passes
more (an ``endpoint_url``, ``anon: true`` for a public bucket).

Every remote read is retried: RETRIES attempts, waiting BACKOFF_S, then twice as long each time,
then one line naming the URL and the last error (:class:`~asr.data.shards.layout.ShardError`);
missing files, refused credentials and a missing package are not retried. Remote shards are copied
whole into a local cache (:class:`ShardCache`, bounded, shared by the processes of a machine) and
read from there, one request per shard.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from asr.data.shards.layout import INDEX_ARRAYS, INDEX_JSON, ShardError, ShardIndex

log = logging.getLogger(__name__)

RETRIES = 4  # attempts of a remote read before one line says it failed
BACKOFF_S = 0.5  # wait before the second attempt; doubled for each next one
HTTP_TIMEOUT_S = 60  # no single socket read waits longer (a stalled server is retried, not waited for)
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "shards", "https": "shards"}
T = TypeVar("T")


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def expand_braces(spec: str) -> list[str]:
    """``a{000..002}b`` -> ``a000b a001b a002b`` (zero-padded as written; several ranges multiply)."""
    match = _BRACES.search(spec)
    if match is None:
        return [spec]
    low, high = match.groups()
    width = len(low) if low.startswith("0") else 0
    return [name for n in range(int(low), int(high) + 1)
            for name in expand_braces(spec[:match.start()] + str(n).zfill(width) + spec[match.end():])]


def _filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options = dict(storage_options or {})
    if protocol in ("http", "https"):
        import aiohttp

        options.setdefault("client_kwargs", {"timeout": aiohttp.ClientTimeout(sock_connect=HTTP_TIMEOUT_S,
                                                                              sock_read=HTTP_TIMEOUT_S)})
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as err:
        extra = _EXTRAS.get(protocol, "shards")
        raise ShardError(f"{url}: reading {protocol}:// needs a package that is not installed ({err.name}): "
                         f"pip install 'asr[{extra}]'") from None
    except ValueError as err:
        raise ShardError(f"{url}: {err}") from None


def _permanent(err: BaseException) -> str | None:
    """Why an error will not go away on a retry, or None if it may."""
    name = type(err).__name__
    if isinstance(err, FileNotFoundError):
        return "not found"
    if "Credentials" in name or "NoCredential" in str(err):
        return ("no credentials to read it: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or "
                "+data.corpus.storage_options.anon=true for a public bucket")
    if isinstance(err, PermissionError) or "AccessDenied" in str(err) or "Forbidden" in str(err):
        return f"access denied ({_first_line(err)}): check the credentials' rights on it"
    return None


def with_retries(url: str, action: Callable[[], T], what: str = "read") -> T:
    """``action()``, retried on transient errors (RETRIES attempts, exponential backoff); ShardError
    (one line naming ``url``) when it keeps failing or cannot succeed."""
    delay, last = BACKOFF_S, None
    for attempt in range(1, RETRIES + 1):
        try:
            return action()
        except ShardError:
            raise
        except Exception as err:  # noqa: BLE001 - fsspec, aiohttp and botocore raise their own types
            reason = _permanent(err)
            if reason is not None:
                raise ShardError(f"{url}: {reason}") from None
            last = err
            if attempt < RETRIES:
                log.warning("%s: %s failed (%s); attempt %d of %d in %.1f s", url, what, _first_line(err), attempt + 1,
                            RETRIES, delay)
                time.sleep(delay)
                delay *= 2
    raise ShardError(f"{url}: could not {what} it after {RETRIES} attempts ({_first_line(last)})")


def _first_line(err: BaseException | None) -> str:
    text = str(err).strip() if err is not None else ""
    return (text.splitlines()[0][:200] if text else type(err).__name__)


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    fs, path = _filesystem(url, storage_options)
    return with_retries(url, lambda: fs.cat_file(path))


def download(url: str, dest: Path, storage_options: dict[str, Any] | None = None) -> None:
    """``url`` -> ``dest``, whole or not at all (a temporary file beside it, renamed), retried."""
    fs, path = _filesystem(url, storage_options)

    def fetch() -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            fs.get_file(path, tmp)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)

    with_retries(url, fetch, "download")


class ShardSet:
    """Shards named by a spec (see the module docstring) with their index: where each one is read from.

    Args:
        spec: a path, glob, brace range or URL, or a list of them, in one folder.
        storage_options: passed to fsspec for remote folders.
        cache_dir: where remote shards are copied (default: ``<tmp>/asr-shard-cache``).
        cache_gb: the cache's bound; the least recently used shards are removed beyond it.
    """

    def __init__(self, spec: str | Sequence[str], storage_options: dict[str, Any] | None = None,
                 cache_dir: str | None = None, cache_gb: float = 20.0) -> None:
        specs = [spec] if isinstance(spec, str) else list(spec)
        if not specs:
            raise ShardError("data.shards is empty: give the shards' folder, a pattern or URLs")
        self.storage_options = dict(storage_options or {})
        names, roots = [], set()
        for item in specs:
            for name in self._expand(str(item)):
                root, _, base = name.rstrip("/").rpartition("/")
                if name.endswith("/") or not base.endswith(".tar"):  # a folder: every shard of its index
                    root, base = name.rstrip("/"), None
                roots.add(root)
                names.append(base)
        if len(roots) != 1:
            raise ShardError(f"data.shards: shards in {len(roots)} folders ({', '.join(sorted(roots)[:3])}); they "
                             "must share the folder of their index (scripts/shard.py -o)")
        self.root = roots.pop()
        self.remote = is_remote(self.root)
        full = self._index()
        self.index = full if None in names else full.select([n for n in names if n is not None])
        self.cache = ShardCache(cache_dir, cache_gb, self.storage_options) if self.remote else None

    def _expand(self, spec: str) -> list[str]:
        names = expand_braces(spec)
        if any(ch in spec for ch in "*?[") and not is_remote(spec):
            import glob

            names = sorted(p for n in names for p in glob.glob(n))
            if not names:
                raise ShardError(f"data.shards: {spec} matches no file")
        return names

    def _index(self) -> ShardIndex:
        where = self.root
        if self.remote:
            meta = read_bytes(f"{where}/{INDEX_JSON}", self.storage_options)
            arrays = read_bytes(f"{where}/{INDEX_ARRAYS}", self.storage_options)
        else:
            folder = Path(where.removeprefix("file://"))
            if not (folder / INDEX_JSON).is_file():
                raise ShardError(f"{folder}: no {INDEX_JSON}: not a folder that scripts/shard.py wrote "
                                 f"(python scripts/shard.py INPUT... -o {folder})")
            meta, arrays = (folder / INDEX_JSON).read_bytes(), folder / INDEX_ARRAYS
        return ShardIndex.from_bytes(meta, arrays, where)

    def url(self, shard: int) -> str:
        return f"{self.root}/{self.index.shards[shard].name}"

    def local_path(self, shard: int) -> Path:
        """A local file holding shard ``shard``: the shard itself, or its cached copy (fetched now if
        it is not cached). ShardError if a remote shard cannot be fetched."""
        if self.cache is None:
            return Path(self.url(shard).removeprefix("file://"))
        return self.cache.get(self.url(shard), self.index.shards[shard].bytes)


class ShardCache:
    """Remote shards copied whole into a local folder, at most ``gb`` gigabytes; the least recently
    read are removed first. Shared by every process of the machine (files appear by rename)."""

    def __init__(self, folder: str | None, gb: float, storage_options: dict[str, Any]) -> None:
        default = Path(tempfile.gettempdir()) / f"asr-shard-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"
        self.folder = Path(folder) if folder else default
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limit = int(gb * 1e9)
        self.storage_options = storage_options

    def path(self, url: str) -> Path:
        return self.folder / re.sub(r"[^A-Za-z0-9._-]", "_", url.split("://", 1)[-1])

    def get(self, url: str, size: int) -> Path:
        path = self.path(url)
        if path.is_file():
            os.utime(path)  # recently used
            return path
        self._make_room(size)
        download(url, path, self.storage_options)
        return path

    def _make_room(self, size: int) -> None:
        files = sorted((p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime)
        used = sum(p.stat().st_size for p in files)
        for old in files:
            if used + size <= self.limit:
                break
            used -= old.stat().st_size
            old.unlink(missing_ok=True)

    def prefetch(self, url: str, size: int) -> None:
        """Fetch into the cache if absent; errors are left for the read that needs it (logged once here)."""
        try:
            self.get(url, size)
        except ShardError as err:
            log.warning("prefetch: %s", err)
