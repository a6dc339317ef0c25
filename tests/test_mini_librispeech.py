import pytest

from asr.cli.prepare import main as prepare_main  # scripts/prepare.py
from asr.data.corpora.base import CorpusError
from asr.data.corpora.librispeech import MiniLibriSpeechCorpus
from asr.data.manifest import read_manifest
from tests.fake_librispeech import RangeServer, make_subset, write_archives

# Mini LibriSpeech's two SLR31 subsets, and SLR12's test-clean as its test set.
SUBSETS = {"train-clean-5": make_subset("train-clean-5", n=4, seed=1, corrupt=1),
           "dev-clean-2": make_subset("dev-clean-2", seed=2), "test-clean": make_subset("test-clean", seed=3)}
RESOURCES = {"train-clean-5": 31, "dev-clean-2": 31, "test-clean": 12}
MD5 = {name: s.md5 for name, s in SUBSETS.items()}


def _mirror():
    return RangeServer({f"/{RESOURCES[name]}/{name}.tar.gz": s.archive for name, s in SUBSETS.items()})


def test_prepare_downloads_from_both_resources_and_writes_exact_manifests_once(tmp_path):
    root = tmp_path / "mini"
    with _mirror() as server:
        corpus = MiniLibriSpeechCorpus(root, download=True, mirror=server.url, checksums=MD5, progress=False)
        problems = corpus.prepare()  # the default subsets: all three, extracted in parallel processes
        manifests = corpus.manifests()
        assert list(manifests) == ["train-clean-5", "dev-clean-2", "test-clean"]
        for name, subset in SUBSETS.items():
            assert {u.id: u.duration for u in read_manifest(manifests[name])} == subset.durations
        bad = SUBSETS["train-clean-5"].corrupt[0]
        assert [p.path.endswith(f"{bad}.flac") for p in problems["train-clean-5"]] == [True]
        assert bad in (root / "train-clean-5.skipped.tsv").read_text()
        assert sorted(path for path, _ in server.requests) == ["/12/test-clean.tar.gz", "/31/dev-clean-2.tar.gz",
                                                               "/31/train-clean-5.tar.gz"]
        assert not list((root / "archives").iterdir())  # removed once extracted
        stamps = {p: p.stat().st_mtime_ns for p in manifests.values()}
        assert corpus.prepare() == {}  # a second run does nothing
        assert len(server.requests) == 3 and {p: p.stat().st_mtime_ns for p in manifests.values()} == stamps


def test_archives_are_checked_against_openslr_published_md5(tmp_path):
    """The mirror serves archives that are not OpenSLR's: each is refused against the published MD5,
    in one line, and nothing is extracted."""
    root = tmp_path / "mini"
    with _mirror() as server:
        corpus = MiniLibriSpeechCorpus(root, download=True, mirror=server.url, progress=False, workers=1)
        with pytest.raises(CorpusError) as err:
            corpus.prepare()
    message = str(err.value)
    assert "\n" not in message
    for name, published in (("train-clean-5", "5df7d4e78065366204ca6845bb08f490"),
                            ("dev-clean-2", "6d7ab67ac6a1d2c993d050e16d61080d"),
                            ("test-clean", "32fa31d27d2e1cad72775fee3f4849a9")):
        assert f"{name}: {server.url}/{RESOURCES[name]}/{name}.tar.gz: the download's MD5 {MD5[name]} is not the " \
               f"published {published}" in message
    assert sorted(p.name for p in root.rglob("*")) == ["archives"]  # nothing extracted, no manifest, no download


def test_prepare_command_prints_a_table_and_is_idempotent(tmp_path, capsys):
    md5sums = write_archives(tmp_path / "mirror", SUBSETS)
    with _mirror() as server:
        args = ["mini_librispeech", "--root", str(tmp_path / "mini"), "--mirror", server.url, "--md5sums", str(md5sums),
                "--workers", "1"]
        assert prepare_main(args) == 0
        out, err = capsys.readouterr()
        assert all(f"| {name} " in out for name in SUBSETS)
        assert f"prepare.py mini_librispeech: train-clean-5: skipped {tmp_path}" in err
        assert prepare_main(args) == 0 and "skipped" not in capsys.readouterr().err
        assert len(server.requests) == len(SUBSETS)


def test_missing_data_is_one_line_with_the_prepare_command(tmp_path):
    corpus = MiniLibriSpeechCorpus(tmp_path, progress=False)
    with pytest.raises(CorpusError) as err:
        corpus.manifests()
    assert str(err.value) == (f"Mini LibriSpeech is not prepared in {tmp_path}: no manifest for train-clean-5, "
                              f"dev-clean-2, test-clean; prepare it with: python scripts/prepare.py mini_librispeech "
                              f"--root {tmp_path} --subsets mini")
    with pytest.raises(CorpusError, match="not found in .* prepare them with: python scripts/prepare.py mini_libri"):
        corpus.prepare()  # download is off by default
