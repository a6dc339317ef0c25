"""Command lines of ``scripts/decode.py``, ``scripts/evaluate.py`` and ``scripts/make_manifest.py``.

Each ``*_main(argv) -> exit status`` parses its arguments, calls the library and prints one
line per problem on stderr (``<script>: error: <what>``), never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from asr.audio import AudioError
from asr.checkpoint import CheckpointError
from asr.data.manifest import AUDIO_EXTENSIONS, ManifestError, from_audio_folder, from_librispeech, write_manifest
from asr.files import atomic_write
from asr.report import format_table
from asr.transcribe import DEFAULT_BATCH_SECONDS, Recognizer, Transcript, expand_paths


def _error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _load(prog: str, checkpoint: str, device: str) -> Recognizer | None:
    try:
        return Recognizer.load(checkpoint, device)
    except CheckpointError as err:
        _error(prog, str(err))
        return None


def decode_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="decode.py", description="Transcribe audio files (any rate, mono or stereo, WAV/FLAC/OGG/...).")
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("audio", nargs="+", help="audio files, or folders searched recursively")
    parser.add_argument("-o", "--output", help="write the transcripts to this file instead of stdout")
    parser.add_argument("--format", choices=("tsv", "txt"), default="tsv",
                        help="tsv: <path><TAB><text> per file (default); txt: the text only")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio seconds per batch (default %(default)s)")
    args = parser.parse_args(argv)
    prog = parser.prog
    recognizer = _load(prog, args.checkpoint, args.device)
    if recognizer is None:
        return 2
    paths = expand_paths(args.audio, AUDIO_EXTENSIONS)
    if not paths:
        _error(prog, f"no audio files found in {' '.join(args.audio)}")
        return 2
    lines, failures = [], 0
    for result in recognizer.transcribe_files(paths, args.batch_seconds):
        if isinstance(result, AudioError):
            _error(prog, f"{result} (skipped)")
            failures += 1
            continue
        line = _format(result, args.format)
        if args.output:
            lines.append(line)
        else:
            print(line, flush=True)
    if args.output:
        with atomic_write(args.output) as f:
            f.writelines(line + "\n" for line in lines)
    return 1 if failures else 0


def _format(t: Transcript, fmt: str) -> str:
    return t.text if fmt == "txt" else f"{t.path}\t{t.text}"


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    from asr.evaluate import evaluate, load_test_set, write_utterances

    parser = argparse.ArgumentParser(prog="evaluate.py", description="WER and CER of a checkpoint on test sets.")
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("data", nargs="+", help="test sets: manifest .jsonl files, LibriSpeech-layout folders, "
                                                "or folders of audio files with .txt transcripts")
    parser.add_argument("--out", help="folder for <set>.utterances.jsonl (default: eval/ beside the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS)
    args = parser.parse_args(argv)
    prog = parser.prog
    recognizer = _load(prog, args.checkpoint, args.device)
    if recognizer is None:
        return 2
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    rows, status = [], 0
    for data in args.data:
        try:
            utterances = load_test_set(data)
        except ManifestError as err:
            _error(prog, str(err))
            status = 2
            continue
        name = Path(data).stem if Path(data).is_file() else Path(data).name
        report = evaluate(recognizer, utterances, name, args.batch_seconds)
        for path, reason in report.failed:
            _error(prog, f"{path}: {reason} (counted as deleted)")
        per_utt = write_utterances(report, out_dir / f"{name}.utterances.jsonl")
        w = report.words
        rows.append([name, len(report.utterances), 100 * report.wer, 100 * report.cer,
                     w.substitutions, w.deletions, w.insertions, w.reference_length])
        print(f"{name}: per-utterance results in {per_utt}", file=sys.stderr)
        status = status or (1 if report.failed else 0)
    if rows:
        print(format_table(["set", "utts", "WER %", "CER %", "sub", "del", "ins", "words"], rows))
    return status


def make_manifest_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_manifest.py", description="Build a JSON-lines manifest.")
    parser.add_argument("layout", choices=("librispeech", "folder"),
                        help="librispeech: <spk>/<chapter>/*.trans.txt + audio; folder: audio files with .txt beside")
    parser.add_argument("folder")
    parser.add_argument("manifest", help="output .jsonl (written atomically)")
    args = parser.parse_args(argv)
    build = from_librispeech if args.layout == "librispeech" else from_audio_folder
    try:
        utterances, problems = build(args.folder)
    except ManifestError as err:
        _error(parser.prog, str(err))
        return 2
    for p in problems:
        _error(parser.prog, f"{p.path}: {p.reason} (skipped)")
    write_manifest(args.manifest, utterances)
    hours = sum(u.duration for u in utterances) / 3600
    print(f"{args.manifest}: {len(utterances)} utterances, {hours:.2f} h, {len(problems)} skipped")
    return 0


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
