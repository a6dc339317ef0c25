import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from asr.cli import decode_main, evaluate_main, make_manifest_main
from tests.conftest import ROOT


def _audio_files(folder):
    """One file per format, rate and channel layout the decoder promises to read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, subtype in (("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")):
        for rate in (8000, 16000, 22050, 44100):
            for channels in (1, 2):
                wave = 0.1 * np.random.default_rng(rate).standard_normal((rate, channels))
                path = folder / f"{fmt}_{rate}_{channels}ch.{fmt}"
                sf.write(path, wave, rate, subtype=subtype)
                paths.append(path)
    return paths


def test_decode_reads_every_format_rate_and_layout(tiny_checkpoint, tmp_path, capsys):
    paths = _audio_files(tmp_path / "audio")
    assert decode_main([str(tiny_checkpoint), str(tmp_path / "audio")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(map(str, paths))


def test_decode_reports_bad_files_and_goes_on(tiny_checkpoint, tmp_path, capsys):
    good = _audio_files(tmp_path / "audio")[:2]
    (tmp_path / "notes.flac").write_text("not audio")
    status = decode_main([str(tiny_checkpoint), str(good[0]), str(tmp_path / "missing.wav"),
                          str(tmp_path / "notes.flac"), str(good[1])])
    out, err = capsys.readouterr()
    assert status == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good[0]), str(good[1])]
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 2 and "missing.wav: no such file" in err_lines[0]
    assert "notes.flac: not a readable audio file" in err_lines[1]
    assert "Traceback" not in err


def test_decode_writes_an_output_file(tiny_checkpoint, tmp_path, capsys):
    good = _audio_files(tmp_path / "audio")[:3]
    out_file = tmp_path / "out" / "transcripts.txt"
    assert decode_main([str(tiny_checkpoint), *map(str, good), "-o", str(out_file), "--format", "txt"]) == 0
    assert len(out_file.read_text().splitlines()) == 3 and capsys.readouterr().out == ""


def test_decode_with_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert decode_main([str(tmp_path / "nope.ckpt"), "x.wav"]) == 2
    assert capsys.readouterr().err.strip() == f"decode.py: error: {tmp_path / 'nope.ckpt'}: checkpoint not found"


def test_evaluate_reports_wer_and_per_utterance_results(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    assert evaluate_main([str(tiny_checkpoint), str(chirp_manifests["test"]), "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| test " in table and "WER %" in table
    rows = [json.loads(line) for line in (tmp_path / "test.utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"reference", "hypothesis", "word_errors"} <= set(rows[0])


def test_make_manifest_from_a_folder(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", np.zeros(8000), 8000)
    (tmp_path / "a.txt").write_text("hello")
    assert make_manifest_main(["folder", str(tmp_path), str(tmp_path / "m.jsonl")]) == 0
    assert json.loads((tmp_path / "m.jsonl").read_text())["duration"] == 1.0


def test_scripts_run_as_commands(tiny_checkpoint, tmp_path):
    wav = _audio_files(tmp_path)[0]
    out = subprocess.run([sys.executable, "scripts/decode.py", str(tiny_checkpoint), str(wav)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(wav))
