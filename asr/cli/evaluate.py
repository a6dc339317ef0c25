"""``evaluate.py`` / ``asr-evaluate``: a model and test sets -> WER/CER, S/D/I, per speaker; report.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr.cli.common import (
    MODEL_HELP,
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
from asr.data.manifest import ManifestError
from asr.decoding.beam import build_decoder
from asr.decoding.options import DecodeOptions
from asr.inference.recognizer import DEFAULT_BATCH_SECONDS
from asr.report import format_table

PROG = program("evaluate.py")  # asr-evaluate when run as that command

def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(
        prog=PROG, description="WER and CER of a checkpoint on test sets, with S/D/I, per-speaker WER, "
                                        "frequent substitutions and the worst utterances; decoders side by side.",
        epilog="example:\n  evaluate.py model.ckpt data/synthetic/test --decoder greedy beam --lm lm.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=MODEL_HELP)
    parser.add_argument("data", nargs="+", help="test sets: manifest .jsonl files, LibriSpeech-layout folders, "
                                                "or folders of audio files with .txt transcripts")
    parser.add_argument("--out", help="folder for report.json and <set>.utterances.jsonl "
                                      "(default: eval/ beside the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS)
    parser.add_argument("--top", type=int, default=10, help="substitution pairs and worst utterances shown "
                                                             "(default %(default)s; 0: the table only)")
    add_model_args(parser)
    add_decoding_args(parser, several=True)
    add_window_args(parser)
    return run(parser.prog, _evaluate, parser.parse_args(argv))


def _evaluate(args: argparse.Namespace) -> int:
    from asr.decoding.greedy import GreedyDecoder
    from asr.inference.evaluate import evaluate, load_test_set, write_report, write_utterances

    names, args.decoder = list(dict.fromkeys(args.decoder or [])), None
    base = decode_options(args)
    names = names or ["greedy"] + (["beam"] if base.decoder == "beam" else [])
    greedy = DecodeOptions(word_pause=base.word_pause)
    recognizer = build_recognizer(args, greedy)
    options = {n: base.replace(decoder="beam") if n == "beam" else greedy for n in names}
    decoders = {n: build_decoder(o, recognizer.tokenizer) if n == "beam" else GreedyDecoder(recognizer.tokenizer.blank)
                for n, o in options.items()}
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    reports, problems = [], 0  # problems: test sets left out, and sets with unreadable audio
    for data in args.data:
        try:
            utterances = load_test_set(data)
        except ManifestError as err:
            error(PROG, str(err))
            problems += 1
            continue
        if not utterances:  # a folder whose audio files all failed to open
            error(PROG, f"{data}: no readable utterance: nothing to evaluate")
            problems += 1
            continue
        name = Path(data).stem if Path(data).is_file() else Path(data).name
        report = evaluate(recognizer, utterances, name, args.batch_seconds, decoders=decoders)
        if len(report.failed) == len(utterances):  # no WER for a set of which nothing was heard
            error(PROG, f"{data}: none of the {len(utterances)} audio file(s) could be read "
                                  f"({report.failed[0][0]}: {report.failed[0][1]}, ...): nothing to evaluate")
            problems += 1
            continue
        for path, reason in report.failed:
            error(PROG, f"{path}: {reason} (counted as deleted)")
        per_utt = write_utterances(report, out_dir / f"{name}.utterances.jsonl")
        print(f"{name}: per-utterance results in {per_utt}", file=sys.stderr)
        reports.append(report)
        problems += bool(report.failed)
    if not reports:
        return 2  # every set was unreadable: nothing evaluated, nothing written
    path = write_report(reports, out_dir / "report.json", checkpoint=str(Path(args.checkpoint).resolve()),
                        decoders={n: o.to_dict() for n, o in options.items()})
    print(_summary_table(reports, names))
    if args.top > 0:
        for report in reports:
            print(_details(report, names, args.top))
    print(f"report: {path}", file=sys.stderr)
    return 1 if problems else 0


def _summary_table(reports, names: list[str]) -> str:
    rows = []
    for r in reports:
        ds = [r.decoders[n] for n in names]
        rows.append([r.name, len(r.utterances), r.words.reference_length, *(100 * d.wer for d in ds),
                     *(100 * d.cer for d in ds),
                     *(f"{d.words.substitutions}/{d.words.deletions}/{d.words.insertions}" for d in ds)])
    headers = ["set", "utts", "words", *(f"WER % {n}" for n in names), *(f"CER % {n}" for n in names),
               *(f"sub/del/ins {n}" for n in names)]
    return format_table(headers, rows)


def _details(report, names: list[str], top: int) -> str:
    ds = [report.decoders[n] for n in names]
    speakers = sorted(ds[0].speakers)
    rows = [[s, ds[0].speakers[s].reference_length, *(100 * d.speakers[s].rate for d in ds)] for s in speakers]
    parts = [f"\n{report.name}: WER per speaker",
             format_table(["speaker", "words", *(f"WER % {n}" for n in names)], rows)]
    for n, d in zip(names, ds):
        subs = ", ".join(f"{r} -> {h} ({c})" for (r, h), c in d.substitutions.most_common(top)) or "none"
        parts.append(f"\n{report.name}, {n}: most frequent substitutions: {subs}")
        worst = [[u.id, u.word_errors, u.reference_words, u.reference, u.hypothesis] for u in d.worst(top)]
        if worst:
            parts.append(f"{report.name}, {n}: worst utterances")
            parts.append(format_table(["id", "errors", "words", "reference", "hypothesis"], worst))
    return "\n".join(parts)
