import io
import json
import logging
import tarfile

import pytest
import torch

from asr.cli.prepare import main as prepare_main  # scripts/prepare.py
from asr.data.corpora.an4 import AN4Corpus
from asr.data.corpora.base import CorpusError
from asr.data.manifest import read_manifest
from tests.commands import CPU_OVERRIDES, run
from tests.fake_an4 import make_an4
from tests.fake_librispeech import RangeServer, make_subset

AN4 = make_an4(corrupt=1)  # its last training file (speaker mkdb) is garbage
# With dev_speakers=3, of the 4 f and 6 m training speakers: 1 f and 2 m, spread over each alphabet.
DEV_OF_3 = {"fclc", "mblw", "mjgm"}


def _mirror(an4=AN4):
    return RangeServer({"/an4_sphere.tar.gz": an4.archive})


def _split(manifests):
    return {split: read_manifest(path) for split, path in manifests.items()}


def test_prepare_downloads_extracts_and_writes_train_dev_test_once(tmp_path, caplog):
    root = tmp_path / "an4"
    with _mirror() as server:
        corpus = AN4Corpus(root, download=True, mirror=server.url, dev_speakers=3, progress=False)
        with caplog.at_level(logging.WARNING):
            problems = corpus.prepare()
        manifests = corpus.manifests()
        utts = _split(manifests)
        assert {u.speaker for u in utts["dev"]} == DEV_OF_3
        assert not DEV_OF_3 & {u.speaker for u in utts["train"]}
        train_and_dev = {u.id: u.duration for u in utts["train"] + utts["dev"]}
        assert train_and_dev == AN4.durations["train"]  # exact, from the SPHERE headers
        assert {u.id: u.duration for u in utts["test"]} == AN4.durations["test"]
        assert all(u.text == AN4.texts[u.id] for us in utts.values() for u in us)  # "<s>", "</s>", "(id)" gone
        assert [p.path.endswith(f"{AN4.corrupt[0]}.sph") for p in problems["train"]] == [True]
        assert problems["dev"] == problems["test"] == []
        assert AN4.corrupt[0] in (root / "train.skipped.tsv").read_text()
        assert json.loads(manifests["test"].read_text().splitlines()[0])["audio"].startswith("an4/wav/an4test_clstk/")
        assert not (root / "archives" / "an4_sphere.tar.gz").exists()  # removed once extracted
        assert f"no published checksum to verify it against; its MD5 is {AN4.md5}" in caplog.text
        stamps = {p: p.stat().st_mtime_ns for p in manifests.values()}
        n_requests = len(server.requests)
        assert corpus.prepare() == {}  # a second run does nothing
        assert len(server.requests) == n_requests == 1
        assert {p: p.stat().st_mtime_ns for p in manifests.values()} == stamps


def test_prepare_command_verifies_a_pinned_md5_prints_a_table_and_is_idempotent(tmp_path, capsys):
    md5sums = tmp_path / "md5sum.txt"
    md5sums.write_text(f"{AN4.md5}  an4_sphere.tar.gz\n")
    with _mirror() as server:
        args = ["an4", "--root", str(tmp_path / "an4"), "--mirror", server.url, "--md5sums", str(md5sums),
                "--dev-speakers", "3"]
        assert prepare_main(args) == 0
        out, err = capsys.readouterr()
        assert all(f"| {split} " in out for split in ("train", "dev", "test"))
        assert f"prepare.py an4: train: skipped {tmp_path}" in err and "MD5" not in err  # pinned: verified
        assert prepare_main(args) == 0 and "skipped" not in capsys.readouterr().err
        assert len(server.requests) == 1


def test_checksum_mismatch_is_one_line_and_nothing_is_extracted(tmp_path, capsys):
    md5sums = tmp_path / "md5sum.txt"
    md5sums.write_text(f"{'f' * 32}  an4_sphere.tar.gz\n")
    root = tmp_path / "an4"
    with _mirror() as server:
        assert prepare_main(["an4", "--root", str(root), "--mirror", server.url, "--md5sums", str(md5sums)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bars
    assert errors == [f"prepare.py an4: error: an4_sphere: {server.url}/an4_sphere.tar.gz: the download's MD5 "
                      f"{AN4.md5} is not the published {'f' * 32}; it was deleted and never used: run again, or "
                      "choose another mirror"]
    assert sorted(p.name for p in root.rglob("*")) == ["archives"]  # no an4/, no manifest, no partial download


def test_another_dev_set_splits_the_extracted_folder_again_without_downloading(tmp_path):
    root = tmp_path / "an4"
    with _mirror() as server:
        AN4Corpus(root, download=True, mirror=server.url, dev_speakers=3, progress=False).prepare()
    corpus = AN4Corpus(root, dev_speakers=["fash", "mkdb"], progress=False)  # download off; the server is gone
    problems = corpus.prepare()
    utts = _split(corpus.manifests())
    assert {u.speaker for u in utts["dev"]} == {"fash", "mkdb"}
    assert {u.speaker for u in utts["train"]} == {"fbbh", "fclc", "fjam", "mblb", "mblw", "mcen", "mdxx", "mjgm"}
    assert [p.path.endswith(f"{AN4.corrupt[0]}.sph") for p in problems["dev"]] == [True]  # mkdb's bad file moved
    assert corpus.prepare() == {}


def test_held_out_speakers_are_a_fixed_spread_of_both_sexes():
    speakers = [f"f{i:03d}" for i in range(20)] + [f"m{i:03d}" for i in range(54)]  # AN4's training speakers: 74
    held_out = AN4Corpus("unused").held_out(speakers)
    assert held_out == AN4Corpus("unused").held_out(sorted(speakers, reverse=True))  # order does not matter
    assert held_out == ["f005", "f015", "m004", "m013", "m022", "m031", "m040", "m049"]  # 8 = 2.16 f + 5.84 m
    assert AN4Corpus("unused", dev_speakers=0).held_out(speakers) == []


@pytest.mark.parametrize("dev_speakers,message", [
    (["fash", "zzzz"], "dev_speakers ['zzzz'] are not AN4 training speakers; they are: fash mblb"),
    (2, "dev_speakers=2: choose 0 to 1 of the 2 AN4 training speakers"),
])
def test_impossible_dev_sets_are_one_line(dev_speakers, message):
    with pytest.raises(CorpusError) as err:
        AN4Corpus("unused", dev_speakers=dev_speakers).held_out(["fash", "mblb"])
    assert str(err.value) == message


def test_missing_data_is_one_line_with_the_prepare_command(tmp_path):
    corpus = AN4Corpus(tmp_path, progress=False)
    with pytest.raises(CorpusError) as err:
        corpus.manifests()
    assert str(err.value) == (f"AN4 is not prepared in {tmp_path}: no manifest for train, dev, test; prepare it with: "
                              f"python scripts/prepare.py an4 --root {tmp_path}")
    with pytest.raises(CorpusError) as err:
        corpus.prepare()  # download is off by default
    assert str(err.value) == (f"AN4 archive(s) an4_sphere not found in {tmp_path} (no manifest, folder or archive); "
                              f"prepare them with: python scripts/prepare.py an4 --root {tmp_path}")


def test_an_archive_that_is_not_an4_is_refused(tmp_path):
    source = tmp_path / "mine"
    source.mkdir()
    (source / "an4_sphere.tar.gz").write_bytes(make_subset("dev-clean").archive)  # LibriSpeech/ inside
    with pytest.raises(CorpusError, match=r"^an4_sphere: .*an4_sphere.tar.gz: no an4/ inside; is it the right"):
        AN4Corpus(tmp_path / "an4", source=source, progress=False).prepare()
    assert not list((tmp_path / "an4").rglob("*"))  # no an4/, no manifest, no work folder


def test_lists_without_their_audio_or_transcript_are_reported(tmp_path):
    folder = tmp_path / "an4"
    with tarfile.open(fileobj=io.BytesIO(AN4.archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    test_list = folder / "etc" / "an4_test.transcription"
    lines = test_list.read_text().splitlines()
    test_list.write_text("\n".join([lines[0], "no parenthesis", *lines[2:], "EXTRA (an999-mcel-b)"]) + "\n")
    corpus = AN4Corpus(tmp_path, progress=False)
    problems = corpus.prepare()  # the extracted folder in root is used where it is
    reasons = sorted(p.reason for p in problems["test"])
    assert reasons == ["an999-mcel-b is not in an4_test.fileids", "no transcript in an4_test.transcription",
                       "not '<s> TEXT </s> (fileid)'"]
    assert len(read_manifest(corpus.manifests()["test"])) == len(AN4.durations["test"]) - 1


def test_prepare_then_train_then_evaluate_and_decode(tmp_path):
    """recipe=an4's commands on a generated archive served on 127.0.0.1: prepare, 10 training
    steps, then the checkpoint evaluates the test set and transcribes a SPHERE file."""
    an4 = make_an4(per_speaker=3, seconds=(1.5, 3.0))
    root, run_dir = tmp_path / "an4", tmp_path / "run"
    with _mirror(an4) as server:
        out = run("scripts/prepare.py", "an4", "--root", root, "--mirror", server.url, "--dev-speakers", "2")
    assert out.returncode == 0, out.stderr
    assert all(f"| {split} " in out.stdout for split in ("train", "dev", "test"))

    out = run("scripts/train.py", "recipe=an4", f"data.root={root}", "data.corpus.dev_speakers=2",
              "trainer.max_steps=10", "trainer.check_val_every_n_epoch=null", *CPU_OVERRIDES,
              f"hydra.run.dir={run_dir}")  # validated at step 10, across epochs of 9 batches
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| test " in out.stdout  # the final test table
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 10

    out = run("scripts/evaluate.py", checkpoint, root / "test.jsonl", "--out", tmp_path / "eval")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test" in out.stdout and any((tmp_path / "eval").iterdir())
    sph = next((root / "an4" / "wav" / "an4test_clstk").rglob("*.sph"))
    out = run("scripts/decode.py", checkpoint, sph)
    assert out.returncode == 0 and out.stdout.startswith(str(sph)), out.stderr[-3000:]
