"""Shards (asr.data.shards, scripts/shard.py): a round trip that gives back every id, text and sample;
an interrupted conversion that resumes; WebDataset's and NeMo's readers; training from a local
folder, an HTTP server and an S3-compatible server on 127.0.0.1; every fault one line, no hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
import torch

from asr.audio import load_audio
from asr.data.dataset import Example, Skipped
from asr.data.manifest import read_manifest, write_manifest
from asr.data.shards import writer
from asr.data.shards.dataset import ShardDataset
from asr.data.shards.layout import NEMO_MANIFEST, ShardError
from asr.data.shards.remote import ShardSet
from asr.data.shards.sampler import ShardBatchSampler
from asr.text import CharTokenizer
from asr.training.train import train
from tests.conftest import ROOT, TINY_MODEL, _chirps, compose_config
from tests.http_server import FileServer

SHARD_HOURS = 0.0015  # ~5 s of chirps: 9-10 shards of the 40-utterance corpus
TOK = CharTokenizer()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("shardcorpus")
    manifests = {split: write_manifest(root / f"{split}.jsonl", _chirps(root / split, n, seed))
                 for split, n, seed in (("train", 40, 0), ("dev", 4, 1), ("test", 4, 2))}
    summary = writer.convert([manifests["train"]], root / "shards", SHARD_HOURS, workers=0)
    assert summary.written == summary.shards >= 8 and not summary.skipped
    return root, manifests


def test_every_id_text_and_sample_comes_back(corpus):
    root, manifests = corpus
    originals = {u.id: u for u in read_manifest(manifests["train"])}
    shards = ShardSet(str(root / "shards"))
    dataset = ShardDataset(shards, TOK, 16_000)
    assert len(dataset) == len(originals)
    seen = set()
    for i in range(len(dataset)):
        example = dataset[i]
        assert isinstance(example, Example), example
        span = (root / "shards" / shards.index.shards[int(shards.index.shard[i])].name).read_bytes()
        start = int(shards.index.start[i])
        meta = json.loads(span[start + 512:start + 512 + tarfile.TarInfo.frombuf(span[start:start + 512], "utf-8",
                                                                                   "strict").size])
        original = originals[meta["id"]]
        assert example.text == TOK.normalize(original.text)
        assert torch.equal(example.waveform, load_audio(original.audio, 16_000))  # FLAC of 16-bit audio: lossless
        assert shards.index.duration[i] == pytest.approx(original.duration, abs=1e-4)
        seen.add(meta["id"])
    assert seen == set(originals)


def test_another_toolkits_readers_open_the_shards(corpus):
    import webdataset

    root, manifests = corpus
    tars = sorted(str(p) for p in (root / "shards").glob("*.tar"))
    samples = list(webdataset.WebDataset(tars, shardshuffle=False))
    texts = sorted(json.loads(s["json"])["text"] for s in samples)
    assert texts == sorted(u.text for u in read_manifest(manifests["train"]))
    assert all(set(s) >= {"__key__", "flac", "json"} for s in samples)
    nemo = [json.loads(line) for line in (root / "shards" / NEMO_MANIFEST).read_text().splitlines()]
    with tarfile.open(root / "shards" / f"{nemo[0]['shard_id']:06d}.tar") as tar:  # NeMo: member name + shard id
        assert nemo[0]["audio_filepath"] in tar.getnames()


def test_an_interrupted_conversion_resumes_and_a_finished_one_does_nothing(corpus, tmp_path, monkeypatch):
    root, manifests = corpus
    real, calls = writer.write_shard, []

    def dies_after_three(plan, out, sample_rate):
        if len(calls) == 3:
            (Path(out) / f".{plan.name}.partial-123").write_bytes(b"half a shard")  # as a kill leaves it
            raise KeyboardInterrupt
        calls.append(plan.name)
        return real(plan, out, sample_rate)

    monkeypatch.setattr(writer, "write_shard", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        writer.convert([manifests["train"]], tmp_path / "out", SHARD_HOURS, workers=0)
    monkeypatch.setattr(writer, "write_shard", real)
    assert len(list((tmp_path / "out").glob("*.tar"))) == 3
    resumed = writer.convert([manifests["train"]], tmp_path / "out", SHARD_HOURS, workers=0)
    assert resumed.written == resumed.shards - 3 and not list((tmp_path / "out").glob(".*partial*"))
    again = writer.convert([manifests["train"]], tmp_path / "out", SHARD_HOURS, workers=0)
    assert again.written == 0
    assert (tmp_path / "out" / "index.npz").read_bytes() == (root / "shards" / "index.npz").read_bytes()
    with pytest.raises(ValueError, match="holds other utterances than this conversion puts there"):
        writer.convert([manifests["train"]], tmp_path / "out", SHARD_HOURS, seed=7, workers=0)


def test_the_shard_command_reports_unreadable_inputs_and_prints_its_table(corpus, tmp_path):
    root, manifests = corpus
    utterances = read_manifest(manifests["dev"])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    manifest = write_manifest(tmp_path / "m.jsonl", [*utterances, utterances[0].__class__("bad", str(broken), 1.0, "x")])
    run = subprocess.run([sys.executable, "scripts/shard.py", str(manifest), "-o", str(tmp_path / "out"),
                          "--shard-hours", "0.001", "--workers", "1"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1, run.stderr  # some input could not be read: status 1, the rest written
    assert f"shard.py: error: {broken}: not a readable audio file" in run.stderr
    assert "| shards | written now | hours | GB   | skipped |" in run.stdout
    assert (tmp_path / "out" / "shards.skipped.tsv").read_text().splitlines()[1].startswith(str(broken))


def test_the_plan_covers_every_utterance_once_with_equal_batches_on_every_rank_and_worker(corpus):
    root, _ = corpus
    index = ShardSet(str(root / "shards")).index
    samplers = [ShardBatchSampler(index, 4.5, seed=3, num_replicas=2, rank=r, num_workers=2, window_shards=2)
                for r in (0, 1)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        batches = [list(s) for s in samplers]
        assert len(batches[0]) == len(batches[1])
        items = sorted(i for rank in batches for b in rank for i in b)
        assert items == list(range(len(index)))
    worker_shards = [{int(index.shard[i]) for b in batches[0][w::2] for i in b} for w in (0, 1)]
    assert not worker_shards[0] & worker_shards[1]  # each worker reads shards of its own


def test_resume_continues_the_plan_exactly_and_on_another_world_size_with_the_rest(corpus):
    root, _ = corpus
    index = ShardSet(str(root / "shards")).index
    whole = ShardBatchSampler(index, 4.5, seed=3, num_replicas=1, num_workers=2, window_shards=2)
    whole.set_epoch(1)
    batches = list(whole)
    state = {**whole.state_dict(), "skip": 5}
    again = ShardBatchSampler(index, 4.5, seed=3, num_replicas=1, num_workers=2, window_shards=2)
    again.load_state_dict(state)
    again.set_epoch(1)
    assert list(again) == batches[5:]
    two = [ShardBatchSampler(index, 4.5, seed=3, num_replicas=2, rank=r, num_workers=1, window_shards=2)
           for r in (0, 1)]
    rest = []
    for s in two:
        s.load_state_dict(state)
        s.set_epoch(1)
        rest += [i for b in s for i in b]
    assert sorted(rest + [i for b in batches[:5] for i in b]) == list(range(len(index)))


def test_faults_are_one_line_each(corpus, tmp_path, caplog):
    root, _ = corpus
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in (root / "shards").iterdir():
        broken.joinpath(p.name).write_bytes(p.read_bytes())
    shards = ShardSet(str(broken))
    name = shards.index.shards[int(shards.index.shard[0])].name
    data = bytearray((broken / name).read_bytes())
    start = int(shards.index.start[0])
    json_size = tarfile.TarInfo.frombuf(bytes(data[start:start + 512]), "utf-8", "strict").size
    flac = start + 512 + -(-json_size // 512) * 512 + 512  # utterance 0's FLAC data: its "fLaC" mark
    assert data[flac:flac + 4] == b"fLaC"
    data[flac:flac + 4] = b"junk"
    (broken / name).write_bytes(bytes(data))
    last = shards.index.shards[-1].name
    (broken / last).write_bytes((broken / last).read_bytes()[:3000])  # truncated after its first utterance(s)
    dataset = ShardDataset(shards, TOK, 16_000)
    corrupt = dataset[0]
    assert isinstance(corrupt, Skipped) and f"{name}:" in corrupt.path and ".flac" in corrupt.path
    in_last = [i for i in range(len(dataset)) if int(shards.index.shard[i]) == len(shards.index.shards) - 1]
    results = [dataset[i] for i in in_last]
    skipped = [r for r in results if isinstance(r, Skipped)]
    assert skipped and all("truncated at byte 3000" in s.reason for s in skipped)
    assert sum("the rest of this shard is skipped" in m for m in caplog.messages) == 1

    with pytest.raises(ShardError, match=r"no index.json: not a folder that scripts/shard.py wrote"):
        ShardSet(str(tmp_path))
    index = ShardSet(str(root / "shards")).index
    with pytest.raises(ShardError, match=r"shard\(s\) for 4 rank\(s\) x 4 DataLoader worker\(s\) = 16 readers"):
        ShardBatchSampler(index, 4.5, num_replicas=4, num_workers=4)


def test_remote_faults_are_retried_a_bounded_number_of_times_then_one_line(corpus, monkeypatch):
    from asr.data.shards import remote

    monkeypatch.setattr(remote, "BACKOFF_S", 0.01)
    root, _ = corpus
    with FileServer(root) as server:
        server.failures_left = 2  # two 503s: retried, then read
        assert len(ShardSet(f"{server.url}/shards/").index) == 40
        server.failures_left = remote.RETRIES  # every attempt fails
        with pytest.raises(ShardError, match=rf"{server.url}/shards/index.json: could not read it after "
                                             rf"{remote.RETRIES} attempts \(503"):
            ShardSet(f"{server.url}/shards/")
        with pytest.raises(ShardError, match=rf"{server.url}/nowhere/index.json: not found"):
            ShardSet(f"{server.url}/nowhere/")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ShardError, match=rf"{nobody}/shards/index.json: could not read it after {remote.RETRIES}"):
        ShardSet(f"{nobody}/shards/")


def _train_from(spec: str, manifests, run_dir: Path, *extra: str) -> dict:
    cfg = compose_config("data=shards", f"data.corpus.splits.train='{spec}'", f"data.corpus.splits.dev={manifests['dev']}",
                         f"data.corpus.splits.test={manifests['test']}", *TINY_MODEL, "logger=csv", "data.num_workers=1",
                         "trainer.max_steps=6", "trainer.enable_progress_bar=false", "data.batch_seconds=4.5",
                         "data.num_buckets=2", "data.shard_window=2", *extra)
    return train(cfg, run_dir)


def test_training_reads_shards_over_http_with_range_requests(corpus, tmp_path):
    root, manifests = corpus
    with FileServer(root, latency_s=0.01) as server:
        spec = f"{server.url}/shards/{{000000..{len(list((root / 'shards').glob('*.tar'))) - 1:06d}}}.tar"
        results = _train_from(spec, manifests, tmp_path / "run", f"data.corpus.cache_dir={tmp_path / 'cache'}")
        assert any(r.startswith("GET /shards/000000.tar") for r in server.requests)
    assert "test/test/wer" in results
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert len(list((tmp_path / "cache").iterdir())) >= 2  # the shards it read, cached whole


@pytest.fixture
def s3(corpus, monkeypatch):
    """An S3-compatible server (moto) on 127.0.0.1 with the shards in s3://asr/shards/; credentials
    and endpoint the standard way (AWS_* variables), as a user's bucket would be read."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_address[1]}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="asr")
    for path in (corpus[0] / "shards").iterdir():
        client.upload_file(str(path), "asr", f"shards/{path.name}")
    yield env
    server.stop()


def test_training_reads_shards_from_an_s3_compatible_server(corpus, s3, tmp_path):
    root, manifests = corpus
    results = _train_from("s3://asr/shards/", manifests, tmp_path / "run", f"data.corpus.cache_dir={tmp_path / 'cache'}")
    assert "test/test/wer" in results and len(list((tmp_path / "cache").iterdir())) >= 2


def test_missing_s3_credentials_are_one_line(s3, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=s3["AWS_ENDPOINT_URL"], AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    code = "from asr.data.shards.remote import ShardSet\nShardSet('s3://asr/shards/')"
    run = subprocess.run([sys.executable, "-c", f"import sys\ntry:\n    {code.replace(chr(10), chr(10) + '    ')}\n"
                          "except Exception as e:\n    print(type(e).__name__, e)"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert run.stdout.startswith("ShardError s3://asr/shards/index.json: no credentials to read it: set "
                                 "AWS_ACCESS_KEY_ID"), run.stdout + run.stderr[-2000:]


def test_too_few_shards_for_the_readers_is_refused_before_training(corpus, tmp_path):
    root, manifests = corpus
    overrides = ["data=shards", f"data.corpus.splits.train={root / 'shards'}", f"data.corpus.splits.dev={manifests['dev']}",
                 f"data.corpus.splits.test={manifests['test']}", *TINY_MODEL, "logger=none", "data.num_workers=16",
                 f"paths.runs_dir={tmp_path}", "trainer.max_steps=2"]
    run = subprocess.run([sys.executable, "scripts/train.py", *overrides], cwd=ROOT, capture_output=True, text=True,
                         timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "readers: every reader needs a shard of its own; write smaller shards" in errors[0]
    assert "Traceback" not in run.stderr


def test_a_large_index_plans_from_compact_arrays():
    """Metadata only: 500,000 utterances in 2,000 shards, planned for rank 0 of 32 x 8 readers
    (benchmarks/data_pipeline.py measures 5 million)."""
    from asr.data.shards.layout import ShardIndex, ShardInfo

    n, shards = 500_000, 2_000
    rng = np.random.default_rng(0)
    duration = rng.uniform(1, 17, n).astype(np.float32)
    shard = np.repeat(np.arange(shards, dtype=np.uint32), n // shards)
    index = ShardIndex([ShardInfo(f"{s:06d}.tar", n // shards, 18_000.0, 1) for s in range(shards)], shard,
                       np.zeros(n, np.uint64), np.zeros(n, np.uint32), duration)
    assert sum(a.nbytes for a in (index.shard, index.start, index.size, index.duration)) == 20 * n
    sampler = ShardBatchSampler(index, 1600, seed=1, num_replicas=32, rank=0, num_workers=8, window_shards=4)
    first = next(iter(sampler))
    assert len(first) >= 10 and all(0 <= i < n for i in first)
    plan = sampler.plan()  # all 256 streams: every utterance once, as many batches each
    assert sum(len(b) for stream in plan for b in stream) == n and len({len(stream) for stream in plan}) == 1


def test_librispeech_from_shards_keeps_the_recipe_batching_and_takes_eval_manifests_from_data_root(tmp_path):
    files = compose_config("recipe=librispeech", f"data.root={tmp_path}")
    shards = compose_config("recipe=librispeech", "data=librispeech_shards", f"data.root={tmp_path}",
                            "data.corpus.splits.train=s3://bucket/ls960")
    for key in ("batch_seconds", "num_buckets", "num_workers", "speeds", "sortagrad_epochs", "max_duration",
                "val_splits", "test_splits"):
        assert shards.data[key] == files.data[key], key
    corpus = instantiate(shards.data.corpus)
    assert corpus.splits == {"train": "s3://bucket/ls960", **{s: str(tmp_path / f"{s}.jsonl") for s in
                                                              ("dev-clean", "dev-other", "test-clean", "test-other")}}
    with pytest.raises(Exception, match=r"data.corpus.splits.train.*missing|Missing mandatory value: data.corpus.splits.train"):
        instantiate(compose_config("recipe=librispeech", "data=librispeech_shards").data.corpus)
