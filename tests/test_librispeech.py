import errno
import hashlib
import json

import pytest
import torch

from asr.cli.prepare import main as prepare_main  # scripts/prepare.py
from asr.data.corpora.base import CorpusError
from asr.data.corpora.librispeech import PRESETS, LibriSpeechCorpus
from asr.data.download import extract
from asr.data.manifest import read_manifest
from tests.commands import CPU_OVERRIDES, run
from tests.fake_librispeech import RangeServer, make_subset, write_archives

SUBSETS = {"dev-clean": make_subset("dev-clean", n=4, seed=1, corrupt=1),  # its last FLAC is garbage
           "test-clean": make_subset("test-clean", seed=2)}
MD5 = {name: s.md5 for name, s in SUBSETS.items()}


def _mirror():
    return RangeServer({f"/12/{name}.tar.gz": s.archive for name, s in SUBSETS.items()})


def _durations(manifest):
    return {u.id: u.duration for u in read_manifest(manifest)}


def test_prepare_downloads_extracts_and_writes_exact_manifests_once(tmp_path):
    root = tmp_path / "ls"
    with _mirror() as server:
        corpus = LibriSpeechCorpus(root, list(SUBSETS), download=True, mirror=server.url, checksums=MD5, progress=False,
                                   workers=1)  # the end-to-end test below runs the parallel (process) path
        problems = corpus.prepare()
        manifests = corpus.manifests()
        for name, subset in SUBSETS.items():
            assert _durations(manifests[name]) == subset.durations  # exact, from the FLAC headers
        bad = SUBSETS["dev-clean"].corrupt[0]
        assert [p.path.endswith(f"{bad}.flac") for p in problems["dev-clean"]] == [True]
        assert bad in (root / "dev-clean.skipped.tsv").read_text()
        assert not (root / "archives" / "dev-clean.tar.gz").exists()  # removed once extracted
        assert json.loads(manifests["test-clean"].read_text().splitlines()[0])["audio"].startswith("LibriSpeech/")
        stamps = {p: p.stat().st_mtime_ns for p in manifests.values()}
        n_requests = len(server.requests)
        assert corpus.prepare() == {}  # a second run does nothing
        assert len(server.requests) == n_requests and {p: p.stat().st_mtime_ns for p in manifests.values()} == stamps


def test_checksum_mismatch_is_reported_and_the_archive_never_used(tmp_path):
    root = tmp_path / "ls"
    with _mirror() as server:
        corpus = LibriSpeechCorpus(root, list(SUBSETS), download=True, mirror=server.url, progress=False, workers=1,
                                   checksums={**MD5, "dev-clean": "f" * 32})
        with pytest.raises(CorpusError, match=r"^dev-clean: .*MD5 \w+ is not the published f{32}") as err:
            corpus.prepare()
    assert "\n" not in str(err.value)
    assert not (root / "LibriSpeech" / "dev-clean").exists() and not (root / "dev-clean.jsonl").exists()
    assert not list((root / "archives").glob("dev-clean*"))
    assert (root / "test-clean.jsonl").is_file()  # the good subset is still prepared


def test_existing_archives_and_extracted_folders_are_used(tmp_path):
    source = tmp_path / "mine"
    write_archives(source, SUBSETS)
    extract(source / "test-clean.tar.gz", source / "LibriSpeech" / "test-clean", inner="LibriSpeech/test-clean")
    (source / "test-clean.tar.gz").unlink()
    corpus = LibriSpeechCorpus(tmp_path / "ls", list(SUBSETS), source=source, checksums=MD5, progress=False)
    corpus.prepare()  # nothing to download: download is off
    assert (source / "dev-clean.tar.gz").is_file()  # the user's archive is verified, extracted and left alone
    assert (tmp_path / "ls" / "LibriSpeech" / "dev-clean").is_dir()
    test_audio = read_manifest(corpus.manifests()["test-clean"])[0].audio
    assert test_audio.startswith(str(source / "LibriSpeech" / "test-clean"))  # used where it is


def test_language_model_files_are_fetched_and_verified(tmp_path):
    vocabulary = b"A\nABOUT\n"
    with RangeServer({"/11/librispeech-vocab.txt": vocabulary}) as server:
        corpus = LibriSpeechCorpus(tmp_path, [], download=True, mirror=server.url, lm_files=["librispeech-vocab.txt"],
                                   checksums={"librispeech-vocab.txt": hashlib.md5(vocabulary).hexdigest()},
                                   progress=False)
        corpus.prepare()
    assert (tmp_path / "lm" / "librispeech-vocab.txt").read_bytes() == vocabulary


def test_missing_data_is_one_line_with_the_prepare_command(tmp_path):
    corpus = LibriSpeechCorpus(tmp_path, ["dev-clean", "test-clean"], progress=False)
    with pytest.raises(CorpusError) as err:
        corpus.manifests()
    assert str(err.value) == (f"LibriSpeech is not prepared in {tmp_path}: no manifest for dev-clean, test-clean; "
                              f"prepare it with: python scripts/prepare_librispeech.py --root {tmp_path} "
                              "--subsets dev-clean test-clean")
    with pytest.raises(CorpusError, match="not found in .* prepare them with: python scripts/prepare_librispeech"):
        corpus.prepare()  # download is off by default: training never starts a 60 GB download


@pytest.mark.parametrize("failure,message", [("fsync", "No space left on device"), ("mkstemp", "Permission denied")])
def test_manifest_write_failure_is_clear_and_leaves_no_half_file(tmp_path, monkeypatch, failure, message):
    import asr.files

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device") if failure == "fsync" else PermissionError(
            errno.EACCES, "Permission denied")

    write_archives(tmp_path / "src", {"test-clean": SUBSETS["test-clean"]})
    corpus = LibriSpeechCorpus(tmp_path / "ls", ["test-clean"], source=tmp_path / "src", checksums=MD5, progress=False)
    monkeypatch.setattr(asr.files.os if failure == "fsync" else asr.files.tempfile, failure, fail)
    with pytest.raises(CorpusError, match=f"cannot write .*test-clean.jsonl: {message}"):
        corpus.prepare()
    assert sorted(p.name for p in (tmp_path / "ls").iterdir()) == ["LibriSpeech"]  # no manifest, no temp file


def test_prepare_command_prints_a_table_and_is_idempotent(tmp_path, capsys):
    md5sums = write_archives(tmp_path / "mirror", SUBSETS)
    with _mirror() as server:
        args = ["librispeech", "--root", str(tmp_path / "ls"), "--subsets", *SUBSETS, "--mirror", server.url,
                "--md5sums", str(md5sums), "--workers", "1"]
        assert prepare_main(args) == 0
        out, err = capsys.readouterr()
        assert "| dev-clean " in out and f"dev-clean: skipped {tmp_path}" in err
        n_requests = len(server.requests)
        assert prepare_main(args) == 0 and "skipped" not in capsys.readouterr().err
        assert len(server.requests) == n_requests == len(SUBSETS)


# --- the recipe, end to end, on the command line ---------------------------------------------------
def test_recipe_on_a_folder_without_the_data_is_one_line(tmp_path):
    out = run("scripts/train.py", "recipe=librispeech", f"data.root={tmp_path}", *CPU_OVERRIDES,
               f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"train.py: error: LibriSpeech subset(s) train-clean-100, train-clean-360, train-other-500, "
                      f"dev-clean, dev-other, test-clean, test-other not found in {tmp_path} (no manifest, folder or "
                      f"archive); prepare them with: python scripts/prepare_librispeech.py --root {tmp_path} "
                      "--subsets 960"]
    assert "Traceback" not in out.stderr


def test_prepare_then_train_then_evaluate_and_decode(tmp_path):
    """The recipe's commands on tiny archives: prepare, 20 training steps, then the checkpoint decodes."""
    subsets = {name: make_subset(name, n=4, seed=i, seconds=(1.5, 3.0)) for i, name in enumerate(PRESETS["960"])}
    md5sums = write_archives(tmp_path / "archives", subsets)
    root, run_dir = tmp_path / "librispeech", tmp_path / "run"
    out = run("scripts/prepare_librispeech.py", "--root", root, "--source", tmp_path / "archives",
               "--md5sums", md5sums, "--no-download")
    assert out.returncode == 0, out.stderr
    assert all(f"| {name} " in out.stdout for name in subsets)

    out = run("scripts/train.py", "recipe=librispeech", f"data.root={root}", "trainer.max_steps=20", *CPU_OVERRIDES,
               f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| test-clean " in out.stdout and "| test-other " in out.stdout  # the final test table
    assert (run_dir / "transcripts" / "step0000020.tsv").read_text().startswith("step\treference\thypothesis\n")
    assert f"root: {root}" in (run_dir / "hparams.yaml").read_text()  # the resolved config, logged
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 20

    out = run("scripts/evaluate.py", checkpoint, root / "test-clean.jsonl", "--out", tmp_path / "eval")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test-clean" in out.stdout
    flac = next((root / "LibriSpeech" / "test-other").rglob("*.flac"))
    out = run("scripts/decode.py", checkpoint, flac)
    assert out.returncode == 0 and out.stdout.startswith(str(flac)), out.stderr[-3000:]
