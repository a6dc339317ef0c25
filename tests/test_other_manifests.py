"""Other toolkits' corpora as direct input: a Lhotse CutSet written by Lhotse itself (gzipped) and a NeMo
manifest with offsets train, evaluate and shard as asr's own manifests do, each utterance the span of
its file; what is not read is one line naming the file and the formats that are."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.data.manifest import ManifestError, read_manifest
from tests.commands import CPU_OVERRIDES, run
from tests.conftest import ROOT

WORDS = ["alpha", "bravo", "charlie", "delta"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four 3-second recordings, each holding two 1.5-second utterances (tones of their own pitch)."""
    root = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(0)
    items = []
    for r in range(4):
        t = np.arange(48_000) / 16_000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * r + 150 * (t >= 1.5)) * t) + 0.01 * rng.standard_normal(t.size)
        path = root / f"rec{r}.wav"
        sf.write(path, wave, 16_000)
        items += [(path, f"rec{r}-{half}", 1.5 * half, 1.5, f"{WORDS[r]} {WORDS[(r + half) % 4]}") for half in (0, 1)]
    return root, items


@pytest.fixture(scope="module")
def cutset(recordings):
    """cuts.jsonl.gz as Lhotse writes it (its own API), one cut per utterance, inside its recording."""
    lhotse = pytest.importorskip("lhotse")
    root, items = recordings
    recs = lhotse.RecordingSet.from_recordings(lhotse.Recording.from_file(p, recording_id=p.stem)
                                               for p in sorted({i[0] for i in items}))
    sups = lhotse.SupervisionSet.from_segments(lhotse.SupervisionSegment(uid, p.stem, start, dur, text=text,
                                                                          speaker=p.stem)
                                               for p, uid, start, dur, text in items)
    cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups).trim_to_supervisions(keep_overlapping=False)
    cuts.to_file(root / "cuts.jsonl.gz")
    sups.to_file(root / "supervisions.jsonl.gz")
    return root / "cuts.jsonl.gz"


def test_a_lhotse_cutset_reads_as_the_spans_of_its_recordings(cutset, recordings):
    utterances = read_manifest(cutset)
    assert sorted(u.text for u in utterances) == sorted(i[4] for i in recordings[1])
    for utt in utterances:
        whole = load_audio(utt.audio, 16_000)
        start = round(utt.offset * 16_000)
        assert torch.equal(load_audio(utt.source, 16_000), whole[start:start + round(utt.duration * 16_000)])


def test_a_nemo_manifest_with_offsets_reads_the_same_spans(recordings, tmp_path):
    _, items = recordings
    manifest = tmp_path / "nemo.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(p), "offset": start, "duration": dur, "text": text})
                                + "\n" for p, _, start, dur, text in items))
    utterances = read_manifest(manifest)
    second = utterances[1]
    assert (second.offset, second.duration) == (1.5, 1.5)
    assert torch.equal(load_audio(second.source, 16_000), load_audio(second.audio, 16_000)[24_000:48_000])


def test_manifests_that_are_not_read_are_one_line(cutset, tmp_path):
    with pytest.raises(ManifestError, match=r"supervisions.jsonl.gz:1: a Lhotse supervisions manifest; give the "
                                            r"CutSet"):
        read_manifest(cutset.parent / "supervisions.jsonl.gz")
    binary = tmp_path / "audio.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ManifestError, match=r"audio.jsonl: not a text manifest \(binary data\); asr \(audio, "
                                            r"duration, text\), NeMo .* and Lhotse CutSet JSON lines are read"):
        read_manifest(binary)
    csv = tmp_path / "list.csv"
    csv.write_text("path,text\na.wav,hello\n")
    with pytest.raises(ManifestError, match=r"list.csv:1: not valid JSON .*; asr .* are read"):
        read_manifest(csv)
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(gzip.compress(json.dumps({"id": "x" * 5000}).encode())[:40])  # cut mid-stream
    with pytest.raises(ManifestError, match=r"cut.jsonl.gz: unreadable"):
        read_manifest(broken)


def test_train_evaluate_and_shard_take_a_lhotse_cutset(cutset, tmp_path):
    """The user's story of issue 20: train.py data=manifest and evaluate.py on Lhotse's cuts_*.jsonl.gz."""
    splits = [f"data.corpus.splits.{s}={cutset}" for s in ("train", "dev", "test")]
    out = run("scripts/train.py", "data=manifest", *splits, *CPU_OVERRIDES, "trainer.max_steps=4",
              f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| test " in out.stdout
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = run("scripts/evaluate.py", checkpoint, cutset, "--out", tmp_path / "eval")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| cuts.jsonl " in out.stdout and "Traceback" not in out.stderr
    rows = [json.loads(line) for line in (tmp_path / "eval" / "cuts.jsonl.utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    out = subprocess.run([sys.executable, "scripts/shard.py", str(cutset), "-o", str(tmp_path / "shards"),
                          "--shard-hours", "0.001", "--workers", "0"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "shards" / "index.json").read_text())["utterances"] == 8
