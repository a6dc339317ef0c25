"""``decode.py`` / ``asr-decode``: audio files, folders, manifests or stdin -> text, TSV, JSON lines, SRT, WebVTT."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from asr.audio import AudioError
from asr.cli.common import (
    MODEL_HELP,
    Fail,
    add_decoding_args,
    add_model_args,
    add_window_args,
    build_recognizer,
    decode_options,
    error,
    program,
    run,
    setup_logging,
)
from asr.cli.live import add_stream_args, run_stream
from asr.data.manifest import AUDIO_EXTENSIONS, read_manifest
from asr.files import atomic_write
from asr.inference.recognizer import DEFAULT_BATCH_SECONDS, Transcript, expand_paths

STDIN = "-"  # in place of audio paths: read them from standard input, one per line

PROG = program("decode.py")  # asr-decode when run as that command

def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    from asr.inference.writers import FORMATS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Transcribe audio files of any length (any rate, mono or stereo, "
                                      "WAV/FLAC/OGG/...), with timed words and subtitles.",
        epilog="examples:\n  decode.py model.ckpt talk.flac --format srt > talk.srt\n"
               "  arecord -f S16_LE -r 16000 | decode.py model.ckpt --stream -     # live, lines as they are spoken\n"
               "  decode.py model.ckpt --mic --format jsonl                       # the microphone, JSON lines\n"
               "  decode.py model.ckpt recordings/ --format jsonl -o out.jsonl --lm lm.arpa\n"
               "  decode.py model.int8.onnx recordings/ --threads 2     # an export: no checkpoint needed\n"
               "  find . -name '*.wav' | decode.py model.ckpt - --format txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=MODEL_HELP)
    parser.add_argument("audio", nargs="*", help="audio files, folders (searched recursively), JSON-lines "
                                                 "manifests (.jsonl), or - to read paths from stdin; with "
                                                 "--stream, one stream (- for audio on stdin)")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout; for srt/vtt, a folder "
                                               "that gets one <name>.srt/.vtt per recording")
    parser.add_argument("--format", choices=FORMATS, default="tsv",
                        help="tsv: <path><TAB><text> (default); txt: the text; jsonl: text, words with start/end "
                             "seconds and confidence; srt/vtt: subtitles")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio seconds per batch (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_args(parser)
    add_decoding_args(parser)
    add_window_args(parser)
    add_stream_args(parser)
    args = parser.parse_intermixed_args(argv)  # "CKPT --stream -": the stream's - after an option
    if not args.audio and not args.mic:
        parser.error("give audio files, folders or manifests, - for paths on stdin, or --stream/--mic")
    return run(parser.prog, _decode, args)


def _audio_inputs(items: Sequence[str]) -> list[Path]:
    """Audio paths from files, folders, manifests and ``-`` (stdin), in the order given."""
    out: list[Path] = []
    for item in items:
        if item == STDIN:
            out += expand_paths([line.strip() for line in sys.stdin if line.strip()], AUDIO_EXTENSIONS)
        elif item.endswith(".jsonl"):
            out += [Path(u.audio) for u in read_manifest(item)]
        else:
            out += expand_paths([item], AUDIO_EXTENSIONS)
    return out


def _decode(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.audio import audio_info
    from asr.inference.writers import SUBTITLE_FORMATS, TIMED_FORMATS

    recognizer = build_recognizer(args, decode_options(args))
    if args.stream or args.mic:
        return run_stream(args, recognizer)
    paths = _audio_inputs(args.audio)
    if not paths:
        raise Fail(f"no audio files found in {' '.join(args.audio)}")
    if args.format in SUBTITLE_FORMATS and not args.output and len(paths) > 1:
        raise Fail(f"--format {args.format} writes one file per recording: give -o FOLDER")
    total = sum(_duration(audio_info, p) for p in paths)
    sink = _Sink(args.format, args.output)
    failures, seconds, started = 0, 0.0, time.perf_counter()
    with tqdm(total=round(total, 1), unit="s", desc="transcribing", file=sys.stderr, leave=False,
              disable=True if args.no_progress else None, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio") as bar:
        results = recognizer.transcribe_files(paths, args.batch_seconds, words=args.format in TIMED_FORMATS,
                                              progress=bar.update)
        for result in results:
            if isinstance(result, AudioError):
                bar.clear()
                error(PROG, f"{result} (skipped)")
                failures += 1
                continue
            seconds += result.duration
            sink.add(result)
    if failures == len(paths):  # nothing to write: an earlier output file stays as it was
        raise Fail(f"none of the {len(paths)} file(s) could be read: nothing decoded")
    sink.close()
    elapsed = time.perf_counter() - started
    speed = f" in {elapsed:.1f} s on {recognizer.device}: real-time factor {elapsed / seconds:.3f}" if seconds else ""
    print(f"decode.py: {len(paths) - failures} file(s), {seconds:.1f} s of audio{speed}", file=sys.stderr)
    return 1 if failures else 0


def _duration(audio_info, path: Path) -> float:
    try:
        return audio_info(path).duration
    except AudioError:
        return 0.0


class _Sink:
    """Where transcripts go: stdout line by line, one file written at the end, or a subtitle file each."""

    def __init__(self, fmt: str, output: str | None) -> None:
        from asr.inference.writers import SUBTITLE_FORMATS

        self.fmt, self.output = fmt, output
        self.subtitles = fmt in SUBTITLE_FORMATS
        self.lines: list[str] = []
        self.names: set[str] = set()

    def add(self, t: Transcript) -> None:
        from asr.inference.writers import format_line, format_subtitles

        if not self.subtitles:
            line = format_line(t, self.fmt)
            if self.output:
                self.lines.append(line)
            else:
                print(line, flush=True)
        elif self.output:
            with atomic_write(self._subtitle_path(Path(t.path or "audio"))) as f:
                f.write(format_subtitles(t, self.fmt))
        else:
            print(format_subtitles(t, self.fmt), end="", flush=True)

    def _subtitle_path(self, audio: Path) -> Path:
        """``<output>/<stem>.<fmt>``; a stem seen before gets ``-2``, ``-3``, ..."""
        name, n = f"{audio.stem}.{self.fmt}", 1
        while name in self.names:
            n += 1
            name = f"{audio.stem}-{n}.{self.fmt}"
        self.names.add(name)
        return Path(self.output) / name

    def close(self) -> None:
        if self.output and not self.subtitles:
            with atomic_write(self.output) as f:
                f.writelines(line + "\n" for line in self.lines)
