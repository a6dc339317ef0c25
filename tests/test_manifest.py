import json

import numpy as np
import pytest
import soundfile as sf

from asr.data.dataset import AudioDataset, Example, Skipped, ctc_min_frames, prepare_utterances
from asr.data.manifest import (
    ManifestError,
    Utterance,
    from_audio_folder,
    from_librispeech,
    read_manifest,
    write_manifest,
)
from asr.text import CharTokenizer


def _write_librispeech(root, rows):
    """rows: (speaker, chapter, utt, text, seconds or None for a corrupt file)"""
    for spk, chap, utt, text, seconds in rows:
        folder = root / str(spk) / str(chap)
        folder.mkdir(parents=True, exist_ok=True)
        uid = f"{spk}-{chap}-{utt:04d}"
        if seconds is None:
            (folder / f"{uid}.flac").write_bytes(b"fLaC garbage")
        else:
            sf.write(folder / f"{uid}.flac", np.zeros(int(16000 * seconds)), 16000)
        with open(folder / f"{spk}-{chap}.trans.txt", "a") as f:
            f.write(f"{uid} {text}\n")


def test_librispeech_builder_reads_exact_durations_and_skips_corrupt_files(tmp_path):
    _write_librispeech(tmp_path, [(1, 10, 0, "HELLO WORLD", 1.5), (1, 10, 1, "BAD FILE", None),
                                  (2, 20, 0, "SECOND SPEAKER", 0.75)])
    utts, problems = from_librispeech(tmp_path, progress=False)
    assert [(u.id, u.duration, u.text, u.speaker) for u in utts] == [
        ("1-10-0000", 1.5, "HELLO WORLD", "1"), ("2-20-0000", 0.75, "SECOND SPEAKER", "2")]
    assert len(problems) == 1 and problems[0].path.endswith("1-10-0001.flac")


def test_folder_builder_pairs_audio_with_text(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(8000), 8000)
    (tmp_path / "a.txt").write_text("  hello\nthere ")
    sf.write(tmp_path / "orphan.wav", np.zeros(800), 8000)
    utts, problems = from_audio_folder(tmp_path, progress=False)
    assert [(u.id, u.duration, u.text) for u in utts] == [("a", 1.0, "hello there")]
    assert "no transcript" in problems[0].reason


def test_manifest_round_trip_with_relative_paths(tmp_path):
    (tmp_path / "audio").mkdir()
    utts = [Utterance("u1", str(tmp_path / "audio" / "u1.flac"), 1.25, "Hi there", "s1"),
            Utterance("u2", "/elsewhere/u2.wav", 2.0, "x")]
    path = write_manifest(tmp_path / "m.jsonl", utts)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["audio"] == "audio/u1.flac" and "speaker" not in rows[1]
    assert read_manifest(path) == utts
    assert not list(tmp_path.glob(".m.jsonl.*")), "no temporary file is left behind"


def test_manifest_accepts_nemo_field_names(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "/a/b.wav", "duration": 1, "text": "t"}) + "\n")
    assert read_manifest(tmp_path / "m.jsonl")[0] == Utterance("b", "/a/b.wav", 1.0, "t")


@pytest.mark.parametrize("line,message", [
    ("not json", "m.jsonl:2: not valid JSON"),
    ('{"audio": "a.wav", "text": "t"}', "m.jsonl:2: field 'duration'"),
    ('{"audio": "a.wav", "duration": 1}', "m.jsonl:2: field 'text'"),
    ('{"duration": 1, "text": "t"}', "m.jsonl:2: field 'audio'"),
])
def test_bad_manifest_lines_name_file_line_and_field(tmp_path, line, message):
    good = json.dumps({"audio": "a.wav", "duration": 1, "text": "t"})
    (tmp_path / "m.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / "m.jsonl")


def test_screening_reports_what_it_leaves_out():
    tok = CharTokenizer()
    utts = [Utterance("ok", "a", 2.0, "Fine, thanks!"), Utterance("digits", "b", 2.0, "room 42"),
            Utterance("long", "c", 40.0, "long"), Utterance("dense", "d", 0.5, "far too many letters for the audio")]
    kept, report = prepare_utterances(utts, tok, 0.1, 30.0, output_frame_rate=25.0)
    assert [u.id for u in kept] == ["ok"]
    assert sum(report.dropped.values()) == 3
    assert "'24'" in report.summary("train") and "dense" in report.summary("train")


def test_ctc_needs_a_blank_between_repeats():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_dataset_decodes_or_reports_each_item(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(8000), 8000)
    (tmp_path / "b.flac").write_bytes(b"")
    ds = AudioDataset([Utterance("a", str(tmp_path / "a.wav"), 1.0, "Hi!"),
                       Utterance("b", str(tmp_path / "b.flac"), 1.0, "x")], CharTokenizer(), 16000)
    a, b = ds[0], ds[1]
    assert isinstance(a, Example) and a.waveform.numel() == 16000 and a.text == "hi"
    assert isinstance(b, Skipped) and b.reason.startswith("empty file")


def test_speed_perturbation_changes_duration(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(16000), 16000)
    ds = AudioDataset([Utterance("a", str(tmp_path / "a.wav"), 1.0, "hi")], CharTokenizer(), 16000, speeds=(0.9, 1.1))
    lengths = {ds[0].waveform.numel() for _ in range(30)}
    assert lengths == {17800, 14500}  # 16000 / 0.9 and 16000 / 1.1, rounded to 100 Hz
