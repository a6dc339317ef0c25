"""Long recordings: peak memory (RSS) and speed of ``scripts/decode.py`` on a 10-second and a 2-hour file.

    python benchmarks/long_file_memory.py                          # random weights of the default model
    python benchmarks/long_file_memory.py --checkpoint runs/mini_librispeech/latest/checkpoints/best.ckpt

Builds, in ``--work`` (default: a temporary folder), a long recording (``--hours``, FLAC and WAV,
16 kHz) by concatenating the recordings of ``--data`` (default: the 100 LibriSpeech test-other
utterances beside the repository) over and over with ``GAP_SECONDS`` of digital silence between
them, and a short one (``--short-seconds``) from its start. Each is decoded by ``scripts/decode.py`` in a
subprocess of its own, as a user runs it: greedy and with beam search (lexicon-free, no LM), as
text (``tsv``) and with word times (``srt``: alignment of every word). The checkpoint is
``--checkpoint``, else random weights of the default recipe's model (memory and speed only: the
text is nonsense).

Prints a Markdown table: file duration and container, decoder, output format, peak RSS of the
decode process (``ru_maxrss`` of that child, from ``os.wait4``), wall-clock seconds (loading
included) and real-time factor (wall seconds / audio seconds), and the load average before the runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "librispeech-test-other-100"
SAMPLE_RATE = 16_000  # Hz: the files are written at the models' rate
GAP_SECONDS = 0.5  # digital silence between two recordings of the long file
WRITE_BLOCK_SECONDS = 600.0  # the long file is written this much audio at a time, never held whole
KIB_PER_MB = 1024  # ru_maxrss is in KiB on Linux; MB here means MiB
DECODERS = ("greedy", "beam")
FORMATS = ("tsv", "srt")  # srt: every word aligned (word times), as jsonl and vtt
CONTAINERS = ("flac", "wav")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of recordings (searched recursively)")
    p.add_argument("--checkpoint", help="checkpoint to decode with (default: random weights of the default model)")
    p.add_argument("--hours", type=float, default=2.0, help="length of the long file")
    p.add_argument("--short-seconds", type=float, default=10.0, help="length of the short file")
    p.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    p.add_argument("--formats", nargs="+", default=list(FORMATS), help="decode.py output formats")
    p.add_argument("--containers", nargs="+", default=list(CONTAINERS), choices=CONTAINERS,
                   help="file types of the long file (the short one is FLAC)")
    p.add_argument("--work", help="folder for the files (default: a temporary one); files already there are reused")
    return p.parse_args(argv)


def recordings(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".flac", ".wav") and p.is_file())
    if not files:
        raise SystemExit(f"long_file_memory.py: no .flac or .wav files in {folder}")
    return files


def build_file(sources: list[Path], seconds: float, path: Path) -> float:
    """Write ``seconds`` of the ``sources`` read in turn (mono, 16 kHz), each followed by
    ``GAP_SECONDS`` of silence, to ``path``; returns its duration."""
    if path.exists():
        return sf.info(str(path)).duration
    target, gap = round(seconds * SAMPLE_RATE), np.zeros(round(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    written, pending, i = 0, [], 0
    tmp = path.with_name(path.name + ".part")
    with sf.SoundFile(str(tmp), "w", SAMPLE_RATE, 1, format=path.suffix[1:].upper()) as out:
        while written < target:
            wave, rate = sf.read(str(sources[i % len(sources)]), dtype="float32", always_2d=True)
            if rate != SAMPLE_RATE:
                raise SystemExit(f"long_file_memory.py: {sources[i % len(sources)]} is {rate} Hz, not {SAMPLE_RATE}")
            i += 1
            for piece in (wave.mean(axis=1), gap):
                piece = piece[: target - written]
                pending.append(piece)
                written += piece.size
            if sum(p.size for p in pending) >= WRITE_BLOCK_SECONDS * SAMPLE_RATE or written >= target:
                out.write(np.concatenate(pending))
                pending = []
    tmp.rename(path)
    return written / SAMPLE_RATE


def random_checkpoint(path: Path) -> Path:
    """Random weights of the default recipe's model and its tokenizer (memory and speed only), written once."""
    if not path.exists():
        from inference import random_checkpoint as write  # benchmarks/inference.py's (imports torch)

        write("synthetic", path)
    return path


def run_decode(checkpoint: Path, audio: Path, decoder: str, fmt: str, out: Path) -> tuple[float, float]:
    """Run ``scripts/decode.py`` on one file; returns (peak RSS in MB, wall seconds)."""
    command = [sys.executable, str(ROOT / "scripts" / "decode.py"), str(checkpoint), str(audio), "--format", fmt,
               "--decoder", decoder, "--no-tuned", "--no-progress", "-o", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (getrusage(RUSAGE_CHILDREN) is the max of all)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"long_file_memory.py: {' '.join(command)} failed:\n{stderr.decode()}")
    return usage.ru_maxrss / KIB_PER_MB, wall


def main(argv: list[str] | None = None) -> int:
    from asr.report import format_table

    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        sources = recordings(Path(args.data))
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(work / "random.ckpt")
        files = [(work / "short.flac", args.short_seconds)]
        files += [(work / f"long.{c}", args.hours * 3600) for c in args.containers]
        durations = {}
        for path, seconds in files:
            started = time.perf_counter()
            durations[path] = build_file(sources, seconds, path)
            print(f"long_file_memory.py: {path} ({durations[path]:.0f} s) ready in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        rows = []
        for path, _ in files:
            for decoder in args.decoders:
                for fmt in args.formats:
                    out = work / f"out.{path.stem}.{path.suffix[1:]}.{decoder}.{fmt}"
                    out.mkdir(exist_ok=True) if fmt in ("srt", "vtt") else None
                    rss, wall = run_decode(checkpoint, path, decoder, fmt, out)
                    rows.append([_duration(durations[path]), path.suffix[1:].upper(), decoder, fmt, f"{rss:.0f}",
                                 f"{wall:.1f}", f"{wall / durations[path]:.4f}"])
                    print(" | ".join(rows[-1]), file=sys.stderr)
        print(f"checkpoint: {args.checkpoint or 'random weights of the default model'}; load average at the start "
              f"(1/5/15 min): {load}\n")
        print(format_table(["file", "type", "decoder", "format", "peak RSS MB", "wall s", "RTF"], rows))
    return 0


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


if __name__ == "__main__":
    sys.exit(main())
