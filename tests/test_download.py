import errno
import hashlib
import tarfile

import pytest

from asr.data import download as dl
from asr.data.download import ChecksumError, DownloadError, download, extract, md5sum
from tests.fake_librispeech import RangeServer, make_subset

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several read blocks
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with RangeServer({"/f.bin": PAYLOAD}) as s:
        yield s


def test_full_download_is_verified_and_renamed_into_place(server, tmp_path):
    path = download(f"{server.url}/f.bin", tmp_path / "d" / "f.bin", PAYLOAD_MD5, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no .part left


def test_interrupted_download_resumes_with_a_range_request_on_the_next_run(server, tmp_path):
    server.cut_once.add("/f.bin")
    target = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(f"{server.url}/f.bin", target, PAYLOAD_MD5, retries=0, progress=False)
    part = tmp_path / "f.bin.part"
    assert not target.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    download(f"{server.url}/f.bin", target, PAYLOAD_MD5, retries=0, progress=False)
    assert target.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests == [("/f.bin", None), ("/f.bin", f"bytes={len(PAYLOAD) // 2}-")]


def test_dropped_connection_is_resumed_within_the_same_call(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "RETRY_WAIT_S", 0.01)
    server.cut_once.add("/f.bin")
    assert download(f"{server.url}/f.bin", tmp_path / "f.bin", PAYLOAD_MD5, progress=False).read_bytes() == PAYLOAD
    assert [r[1] for r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    with pytest.raises(ChecksumError, match=f"MD5 {PAYLOAD_MD5} is not the published 0123"):
        download(f"{server.url}/f.bin", tmp_path / "f.bin", "0123" + "0" * 28, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_checked_not_downloaded_again(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(ChecksumError, match="delete it and run again"):
        download(f"{server.url}/f.bin", tmp_path / "f.bin", PAYLOAD_MD5, progress=False)
    assert server.requests == []


def test_missing_file_on_the_server_names_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="nope.bin: HTTP 404"):
        download(f"{server.url}/nope.bin", tmp_path / "nope.bin", progress=False)


def test_extract_puts_the_inner_folder_in_place_once(tmp_path):
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(make_subset("dev-clean").archive)
    dest = extract(archive, tmp_path / "out" / "dev-clean", inner="LibriSpeech/dev-clean")
    assert len(list(dest.rglob("*.flac"))) == 3 and len(list(dest.rglob("*.trans.txt"))) == 1
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dev-clean"]  # no work folder left
    archive.unlink()
    assert extract(archive, dest, inner="LibriSpeech/dev-clean") == dest  # already there: nothing read


def test_extract_failure_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_subset("dev-clean").archive)

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extract", full_disk)
    with pytest.raises(DownloadError, match="cannot extract .*: No space left on device"):
        extract(archive, tmp_path / "out" / "dev-clean", inner="LibriSpeech/dev-clean")
    assert list((tmp_path / "out").iterdir()) == []


def test_truncated_archive_is_reported(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_subset("dev-clean").archive[:500])
    with pytest.raises(DownloadError, match="not a readable archive"):
        extract(archive, tmp_path / "out", inner="LibriSpeech/dev-clean")
    assert not (tmp_path / "out").exists() and md5sum(archive)
