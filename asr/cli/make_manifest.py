"""``make_manifest.py`` / ``asr-make-manifest``: a LibriSpeech-layout or audio + .txt folder -> a manifest."""

from __future__ import annotations

import argparse
from typing import Sequence

from asr.cli.common import error, program, setup_logging
from asr.data.manifest import ManifestError, from_audio_folder, from_librispeech, write_manifest

PROG = program("make_manifest.py")  # asr-make-manifest when run as that command

def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(prog=PROG, description="Build a JSON-lines manifest.")
    parser.add_argument("layout", choices=("librispeech", "folder"),
                        help="librispeech: <spk>/<chapter>/*.trans.txt + audio; folder: audio files with .txt beside")
    parser.add_argument("folder")
    parser.add_argument("manifest", help="output .jsonl (written atomically)")
    args = parser.parse_args(argv)
    build = from_librispeech if args.layout == "librispeech" else from_audio_folder
    try:
        utterances, problems = build(args.folder)
    except ManifestError as err:
        error(parser.prog, str(err))
        return 2
    for p in problems:
        error(parser.prog, f"{p.path}: {p.reason} (skipped)")
    write_manifest(args.manifest, utterances)
    hours = sum(u.duration for u in utterances) / 3600
    print(f"{args.manifest}: {len(utterances)} utterances, {hours:.2f} h, {len(problems)} skipped")
    return 0
