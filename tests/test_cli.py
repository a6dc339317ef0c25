import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import asr
from asr.cli.build_lm import main as build_lm_main
from asr.cli.decode import main as decode_main
from asr.cli.evaluate import main as evaluate_main
from asr.cli.make_manifest import main as make_manifest_main
from asr.cli.tune_lm import main as tune_lm_main
from asr.data.manifest import read_manifest
from asr.decoding.options import DecodeOptions, options_path, save_options
from tests.conftest import ROOT
from tests.test_writers import parse_subtitles


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
    err_lines = [line for line in err.strip().splitlines() if line.startswith("decode.py: error:")]
    assert len(err_lines) == 2 and "missing.wav: no such file" in err_lines[0]
    assert "notes.flac: not a readable audio file" in err_lines[1]
    assert "Traceback" not in err
    assert re.search(r"decode\.py: 2 file\(s\), 2\.0 s of audio in [\d.]+ s on cpu: real-time factor [\d.]+$", err.strip())


def test_decode_writes_an_output_file(tiny_checkpoint, tmp_path, capsys):
    good = _audio_files(tmp_path / "audio")[:3]
    out_file = tmp_path / "out" / "transcripts.txt"
    assert decode_main([str(tiny_checkpoint), *map(str, good), "-o", str(out_file), "--format", "txt"]) == 0
    assert len(out_file.read_text().splitlines()) == 3 and capsys.readouterr().out == ""


def test_decode_with_a_device_that_is_not_there_is_one_line(tiny_checkpoint, tmp_path, capsys):
    wav = _audio_files(tmp_path)[0]
    assert decode_main([str(tiny_checkpoint), str(wav), "--device", "gpu"]) == 2
    assert capsys.readouterr().err == "decode.py: error: --device gpu: not a device; use auto, cpu, cuda or cuda:N\n"
    if not torch.cuda.is_available():
        assert decode_main([str(tiny_checkpoint), str(wav), "--device", "cuda"]) == 2
        assert "no CUDA GPU is available here; use --device cpu" in capsys.readouterr().err


def test_decode_with_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert decode_main([str(tmp_path / "nope.ckpt"), "x.wav"]) == 2
    assert capsys.readouterr().err.strip() == f"decode.py: error: {tmp_path / 'nope.ckpt'}: checkpoint not found"


def test_evaluate_reports_wer_and_per_utterance_results(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    assert evaluate_main([str(tiny_checkpoint), str(chirp_manifests["test"]), "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| test " in table and "WER %" in table
    rows = [json.loads(line) for line in (tmp_path / "test.utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"reference", "hypothesis", "word_errors", "speaker"} <= set(rows[0])


def test_evaluate_puts_greedy_and_beam_with_lm_side_by_side(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    lm = tmp_path / "lm.arpa"
    assert build_lm_main([str(chirp_manifests["train"]), "-o", str(lm), "--order", "2"]) == 0
    assert "2-gram word LM, 6 tokens" in capsys.readouterr().out  # 4 words, </s> and <unk>
    assert evaluate_main([str(tiny_checkpoint), str(chirp_manifests["test"]), str(chirp_manifests["dev"]), "--out",
                          str(tmp_path), "--decoder", "greedy", "beam", "--lm", str(lm), "--beam-size", "8"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("WER % greedy", "WER % beam", "CER % greedy", "CER % beam", "sub/del/ins greedy"):
        assert column in header
    assert "WER per speaker" in out and "most frequent substitutions" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["set"] for s in report["sets"]] == ["test", "dev"]
    test = report["sets"][0]
    assert set(test["decoders"]) == {"greedy", "beam"} and report["decoders"]["beam"]["lm"] == str(lm)
    beam = test["decoders"]["beam"]
    assert set(beam["speakers"]) == {"spk"} and beam["speakers"]["spk"]["reference_length"] == beam["words"]["reference_length"]
    assert {"wer", "cer", "substitutions", "worst_utterances"} <= set(beam)
    assert all(w["word_errors"] > 0 for w in beam["worst_utterances"])
    hyps = [json.loads(line)["decoders"]["beam"]["hypothesis"] for line in (tmp_path / "test.utterances.jsonl").open()]
    vocabulary = {"alpha", "bravo", "charlie", "delta"}
    assert all(set(h.split()) <= vocabulary for h in hyps), "a word LM only outputs its words"


def test_decode_jsonl_srt_and_vtt_parse_back(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    audio = [u.audio for u in read_manifest(chirp_manifests["test"])]
    assert decode_main([str(tiny_checkpoint), *audio, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == audio
    for row in rows:
        assert [w["word"] for w in row["words"]] == row["text"].split()
        assert all(0 <= w["start"] < w["end"] <= row["duration"] and 0 <= w["confidence"] <= 1 for w in row["words"])
    assert decode_main([str(tiny_checkpoint), *audio, "--format", "srt", "-o", str(tmp_path / "subs")]) == 0
    for row, path in zip(rows, audio):
        cues = parse_subtitles((tmp_path / "subs" / (Path(path).stem + ".srt")).read_text())
        assert " ".join(text for _, _, text in cues) == row["text"]
    capsys.readouterr()
    assert decode_main([str(tiny_checkpoint), audio[0], "--format", "vtt"]) == 0
    vtt = capsys.readouterr().out
    assert vtt.startswith("WEBVTT") and " ".join(c[2] for c in parse_subtitles(vtt)) == rows[0]["text"]
    assert decode_main([str(tiny_checkpoint), *audio[:2], "--format", "vtt"]) == 2
    assert "writes one file per recording: give -o FOLDER" in capsys.readouterr().err


def test_decode_reads_manifests_and_paths_on_stdin(tiny_checkpoint, chirp_manifests, capsys, monkeypatch):
    audio = [u.audio for u in read_manifest(chirp_manifests["dev"])]
    assert decode_main([str(tiny_checkpoint), str(chirp_manifests["dev"])]) == 0
    from_manifest = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(audio) + "\n"))
    assert decode_main([str(tiny_checkpoint), "-"]) == 0
    assert capsys.readouterr().out == from_manifest and len(from_manifest.splitlines()) == len(audio)


def test_bad_lm_files_are_one_line_naming_the_file_and_the_fix(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    wav = read_manifest(chirp_manifests["test"])[0].audio
    assert decode_main([str(tiny_checkpoint), wav, "--lm", str(tmp_path / "missing.arpa")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'missing.arpa'}: language model not found" in err
    lm = tmp_path / "lm.arpa"
    build_lm_main([str(chirp_manifests["train"]), "-o", str(lm)])
    (tmp_path / "spaced.arpa").write_text(lm.read_text().replace("\t", " "))
    assert decode_main([str(tiny_checkpoint), wav, "--lm", str(tmp_path / "spaced.arpa")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "spaced.arpa:" in err and "KenLM needs tabs" in err and "--fix-tabs" in err
    assert build_lm_main(["--fix-tabs", str(tmp_path / "spaced.arpa"), "-o", str(tmp_path / "fixed.arpa")]) == 0
    assert decode_main([str(tiny_checkpoint), wav, "--lm", str(tmp_path / "fixed.arpa")]) == 0
    capsys.readouterr()
    assert decode_main([str(tiny_checkpoint), wav, "--lm", str(lm), "--lexicon", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: lexicon not found" in capsys.readouterr().err


def test_tuned_options_are_stored_with_the_model_and_picked_up(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    ckpt = tmp_path / "run" / "last.ckpt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    lm = tmp_path / "run" / "lm.arpa"
    assert build_lm_main([str(chirp_manifests["train"]), "-o", str(lm)]) == 0
    args = [str(ckpt), str(chirp_manifests["dev"]), "--lm", str(lm), "--beam-size", "4",
            "--lm-weights", "0", "1", "--word-scores", "0", "2"]
    assert tune_lm_main(args) == 0
    out = capsys.readouterr()
    # A 2-step model transcribes nothing, with or without the LM: no point beats greedy, nothing is
    # stored (tests/test_beam_quality.py has a model the LM helps, whose tuning is stored).
    assert "greedy WER 100.00%" in out.err
    # All points tie at 100 %: the best, greedy's (0, 0), is on the word scores' lower edge, so the grid grows.
    assert ("the best point was on the grid's edge: 2 points past it tried (lm_weight up to 1, "
            "word_score -2 to 2)") in out.err
    assert [line for line in out.out.splitlines() if "beats greedy" in line] == [
        "no point beats greedy decoding (best: lm_weight 0, word_score 0: WER 100.00%, greedy 100.00%): "
        "nothing stored, decode greedy"]
    assert not options_path(ckpt).exists()
    assert (tmp_path / "run" / "eval" / "dev.logprobs.pt").is_file(), "dev log-probs are cached"
    assert tune_lm_main(args) == 0, "a second run reads the cache"
    save_options(DecodeOptions("beam", lm=str(lm), lm_weight=1.0), options_path(ckpt))  # as tune_lm.py stores them
    stored = json.loads(options_path(ckpt).read_text())
    recognizer = asr.load(ckpt, device="cpu")
    assert recognizer.options.decoder == "beam" and recognizer.options.lm == str(lm)
    assert recognizer.options.lm_weight == stored["decoding"]["lm_weight"]
    wav = read_manifest(chirp_manifests["test"])[0].audio
    lm.rename(lm.with_suffix(".moved"))  # decode.py now fails if, and only if, it uses the stored options
    assert decode_main([str(ckpt), wav]) == 2 and "lm.arpa: language model not found" in capsys.readouterr().err
    assert decode_main([str(ckpt), wav, "--no-tuned"]) == 0
    assert decode_main([str(ckpt), wav, "--decoder", "greedy"]) == 0, "greedy asked for: the tuned LM is not used"


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


def test_decode_of_nothing_readable_is_status_2_without_speed_and_leaves_the_output_alone(tiny_checkpoint, tmp_path,
                                                                                         capsys):
    (tmp_path / "notes.flac").write_text("not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    out_file = tmp_path / "out.tsv"
    out_file.write_text("earlier transcripts\n")
    status = decode_main([str(tiny_checkpoint), str(tmp_path / "notes.flac"), str(tmp_path / "missing.wav"),
                          str(tmp_path / "empty.wav"), "-o", str(out_file)])
    err = capsys.readouterr().err
    assert status == 2
    assert "empty.wav: contains no audio samples (skipped)" in err
    assert err.strip().splitlines()[-1] == "decode.py: error: none of the 3 file(s) could be read: nothing decoded"
    assert "real-time factor" not in err and "Traceback" not in err
    assert out_file.read_text() == "earlier transcripts\n"


def test_evaluate_of_sets_without_readable_audio(tiny_checkpoint, chirp_manifests, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "nope.wav", "duration": 1.0, "text": "alpha"}\n'
                   '{"audio": "gone.wav", "duration": 1.2, "text": "bravo"}\n')
    assert evaluate_main([str(tiny_checkpoint), str(bad), "--out", str(tmp_path / "a")]) == 2  # nothing heard
    err = capsys.readouterr().err
    assert f"evaluate.py: error: {bad}: none of the 2 audio file(s) could be read" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists(), "no report of a set that was not heard"

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.wav").write_text("not audio")
    (tmp_path / "folder" / "x.txt").write_text("alpha")
    assert evaluate_main([str(tiny_checkpoint), str(tmp_path / "folder"), "--out", str(tmp_path / "b")]) == 2
    assert f"{tmp_path / 'folder'}: no readable utterance: nothing to evaluate" in capsys.readouterr().err

    # one set heard, one not: the report has the one, and the status says something was left out
    assert evaluate_main([str(tiny_checkpoint), str(bad), str(chirp_manifests["test"]), "--out",
                          str(tmp_path / "c"), "--top", "0"]) == 1
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [s["set"] for s in report["sets"]] == ["test"]


def _foreign_checkpoints(folder):
    """Files a user may pass for a checkpoint that scripts/train.py did not write, and what the error says."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weights": torch.zeros(3)}, folder / "plain.ckpt")
    (folder / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save(torch.nn.Linear(2, 2), folder / "module.ckpt")
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(folder / "model.ts"))
    torch.save({"asr": {"format": 1, "model": {}}, "state_dict": {}}, folder / "damaged.ckpt")
    return {"plain.ckpt": "not an asr checkpoint (no 'asr' entry)",
            "random.ckpt": "not a readable PyTorch checkpoint (truncated, or not written by torch.save)",
            "module.ckpt": "not an asr checkpoint: it holds pickled Python objects",
            "model.ts": "a TorchScript model (scripts/export.py writes these)",
            "damaged.ckpt": "a damaged asr checkpoint"}


def test_a_checkpoint_from_another_program_is_one_line_and_status_2(chirp_manifests, tmp_path, capsys):
    wav = read_manifest(chirp_manifests["test"])[0].audio
    for name, says in _foreign_checkpoints(tmp_path).items():
        for prog, main in (("decode.py", decode_main), ("evaluate.py", evaluate_main)):
            data = wav if prog == "decode.py" else str(chirp_manifests["test"])
            assert main([str(tmp_path / name), data, "--out" if prog == "evaluate.py" else "--no-progress",
                         *([str(tmp_path / "eval")] if prog == "evaluate.py" else [])]) == 2, (prog, name)
            err = capsys.readouterr().err
            assert err.startswith(f"{prog}: error: {tmp_path / name}: {says}") and err.count("\n") == 1, err
    assert not (tmp_path / "eval").exists()


def test_scripts_given_a_foreign_checkpoint_print_one_line(chirp_manifests, tmp_path):
    _foreign_checkpoints(tmp_path)
    for script, ckpt, data in (("decode.py", "model.ts", read_manifest(chirp_manifests["test"])[0].audio),
                               ("evaluate.py", "plain.ckpt", str(chirp_manifests["test"]))):
        out = subprocess.run([sys.executable, f"scripts/{script}", str(tmp_path / ckpt), data],
                             cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith(f"{script}: error: {tmp_path / ckpt}: ") and "Traceback" not in out.stderr
