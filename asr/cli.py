"""Command lines of the ``scripts/``: decode, evaluate, tune_lm, build_lm, export, make_manifest.

Each ``*_main(argv) -> exit status`` parses its arguments, calls the library and prints one
line per problem on stderr (``<script>: error: <what>``), never a traceback for bad input.
Exit status: 0 success, 1 some files or test sets could not be read (the others were processed),
2 bad arguments, a bad checkpoint, or no input readable (nothing done, nothing written).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from asr.audio import AudioError
from asr.checkpoint import CheckpointError
from asr.data.manifest import (AUDIO_EXTENSIONS, ManifestError, from_audio_folder, from_librispeech, read_manifest,
                               write_manifest)
from asr.decoding import (DECODERS, LM_UNITS, DecodeOptions, DecodeOptionsError, build_decoder, load_options,
                          options_path, save_options, stored_options)
from asr.files import atomic_write
from asr.lm import UNITS, LMError
from asr.report import format_table
from asr.transcribe import DEFAULT_BATCH_SECONDS, Recognizer, Transcript, expand_paths
from asr.windows import WindowConfig

USER_ERRORS = (CheckpointError, DecodeOptionsError, LMError, ManifestError)
STDIN = "-"  # in place of audio paths: read them from standard input, one per line


class _Fail(Exception):
    """A user error already worded for one line on stderr; the main returns ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _run(prog: str, main, args: argparse.Namespace) -> int:
    """Call ``main(args)``; a user error becomes one line on stderr and exit status 2."""
    try:
        return main(args)
    except _Fail as err:
        _error(prog, str(err))
        return err.status
    except USER_ERRORS as err:
        _error(prog, str(err))
        return 2


# --- decoding options, shared by decode, evaluate and tune_lm -------------------------------------


def _add_decoding_args(parser: argparse.ArgumentParser, several: bool = False, tuning: bool = False) -> None:
    """Decoding flags; ``several``: --decoder takes a list (evaluate); ``tuning``: the LM is required
    and the weights are what is searched."""
    d = DecodeOptions()
    g = parser.add_argument_group("decoding (default: the options tune_lm.py stored beside the checkpoint, else greedy)")
    if several:
        g.add_argument("--decoder", choices=DECODERS, nargs="+",
                       help="decoders side by side (default: greedy, and beam when --lm or tuned options say so)")
    elif not tuning:
        g.add_argument("--decoder", choices=DECODERS, help="greedy, or beam search (implied by --lm)")
    g.add_argument("--lm", required=tuning, help="KenLM n-gram: ARPA (.arpa or .arpa.gz) or binary")
    g.add_argument("--lexicon", help="words the search may output (one per line, or 'word t o k e n s'); "
                                     "default: the LM's words")
    g.add_argument("--lm-unit", choices=LM_UNITS, help="what the LM's tokens are (default: auto, read from the ARPA)")
    g.add_argument("--beam-size", type=int, help=f"hypotheses kept per frame (default {d.beam_size})")
    g.add_argument("--beam-size-token", type=int, help="symbols tried per frame (default: all)")
    g.add_argument("--beam-threshold", type=float, help=f"prune hypotheses this far below the best (default {d.beam_threshold:g})")
    if not tuning:
        g.add_argument("--lm-weight", type=float, help=f"LM weight, alpha (default {d.lm_weight:g})")
        g.add_argument("--word-score", type=float, help=f"bonus per word, beta (default {d.word_score:g})")
    g.add_argument("--word-pause", type=float, help="seconds of pause that end a word where the model emitted "
                                                    f"no space (default {d.word_pause:g}; 0: off)")
    g.add_argument("--log-add", action="store_true", default=None,
                   help="beam: merge hypotheses by adding their probabilities (default: keep the best)")
    if not tuning:
        g.add_argument("--options", help="a JSON or YAML file of decoding options (conf/decode/*.yaml, "
                                         "or a .decoding.json written by tune_lm.py)")
        g.add_argument("--no-tuned", action="store_true", help="ignore the options stored beside the checkpoint")


def _decode_options(args: argparse.Namespace) -> DecodeOptions:
    """Options from, in rising priority: defaults, the checkpoint's stored ones, --options, flags."""
    base = DecodeOptions()
    if not getattr(args, "no_tuned", True):
        base = stored_options(args.checkpoint) or base
    if getattr(args, "options", None):
        base = load_options(args.options)
    flags = {k: getattr(args, k, None) for k in ("decoder", "lm", "lexicon", "lm_unit", "beam_size", "beam_size_token",
                                                  "beam_threshold", "lm_weight", "word_score", "word_pause", "log_add")}
    if flags["lm"] or flags["lexicon"]:
        flags["decoder"] = flags["decoder"] or "beam"
    elif flags["decoder"] == "greedy":  # greedy on a checkpoint tuned for beam: its LM is not wanted
        base = dataclasses.replace(base, decoder="greedy", lm=None, lexicon=None)
    return base.replace(**flags)


MODEL_HELP = "a .ckpt written by scripts/train.py, or a .ts or .onnx export of one (scripts/export.py)"


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    from asr.emitters import BACKENDS

    g = parser.add_argument_group("model")
    g.add_argument("--backend", choices=BACKENDS, help="torch: checkpoints and TorchScript files; onnxruntime: "
                                                      "ONNX files (default: the file's own)")
    g.add_argument("--threads", type=int, help="CPU threads for the model (default: PyTorch's and ONNX Runtime's "
                                               "own, one per core)")


def _add_window_args(parser: argparse.ArgumentParser) -> None:
    d = WindowConfig()
    g = parser.add_argument_group("long recordings")
    g.add_argument("--chunk-seconds", type=float, default=d.chunk,
                   help="output kept per window of a long recording (default %(default)s)")
    g.add_argument("--context-seconds", type=float, default=d.context,
                   help="audio seen on each side of a window's kept part (default %(default)s)")
    g.add_argument("--pause-seconds", type=float, default=d.pause,
                   help="a quiet stretch this long is cut, the speech between cuts recognised alone "
                        "(default %(default)s; 0: fixed windows only)")


def _recognizer(args: argparse.Namespace, options: DecodeOptions) -> Recognizer:
    import torch

    try:
        windows = WindowConfig(args.chunk_seconds, args.context_seconds, pause=args.pause_seconds)
    except ValueError as err:
        raise _Fail(f"--chunk-seconds/--context-seconds/--pause-seconds: {err}") from None
    try:
        device = torch.device("cpu" if args.device == "auto" else args.device)
    except RuntimeError:
        raise _Fail(f"--device {args.device}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise _Fail(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise _Fail(f"--threads {threads}: must be at least 1")
    return Recognizer.load(args.checkpoint, args.device, options, windows, getattr(args, "backend", None), threads)


# --- decode.py ------------------------------------------------------------------------------------


def decode_main(argv: Sequence[str] | None = None) -> int:
    from asr.writers import FORMATS

    parser = argparse.ArgumentParser(
        prog="decode.py", description="Transcribe audio files of any length (any rate, mono or stereo, "
                                      "WAV/FLAC/OGG/...), with timed words and subtitles.",
        epilog="examples:\n  decode.py model.ckpt talk.flac --format srt > talk.srt\n"
               "  decode.py model.ckpt recordings/ --format jsonl -o out.jsonl --lm lm.arpa\n"
               "  decode.py model.int8.onnx recordings/ --threads 2     # an export: no checkpoint needed\n"
               "  find . -name '*.wav' | decode.py model.ckpt - --format txt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=MODEL_HELP)
    parser.add_argument("audio", nargs="+", help="audio files, folders (searched recursively), JSON-lines "
                                                 "manifests (.jsonl), or - to read paths from stdin")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout; for srt/vtt, a folder "
                                               "that gets one <name>.srt/.vtt per recording")
    parser.add_argument("--format", choices=FORMATS, default="tsv",
                        help="tsv: <path><TAB><text> (default); txt: the text; jsonl: text, words with start/end "
                             "seconds and confidence; srt/vtt: subtitles")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS,
                        help="padded audio seconds per batch (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_model_args(parser)
    _add_decoding_args(parser)
    _add_window_args(parser)
    return _run(parser.prog, _decode, parser.parse_args(argv))


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
    from asr.writers import SUBTITLE_FORMATS, TIMED_FORMATS

    recognizer = _recognizer(args, _decode_options(args))
    paths = _audio_inputs(args.audio)
    if not paths:
        raise _Fail(f"no audio files found in {' '.join(args.audio)}")
    if args.format in SUBTITLE_FORMATS and not args.output and len(paths) > 1:
        raise _Fail(f"--format {args.format} writes one file per recording: give -o FOLDER")
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
                _error("decode.py", f"{result} (skipped)")
                failures += 1
                continue
            seconds += result.duration
            sink.add(result)
    if failures == len(paths):  # nothing to write: an earlier output file stays as it was
        raise _Fail(f"none of the {len(paths)} file(s) could be read: nothing decoded")
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
        from asr.writers import SUBTITLE_FORMATS

        self.fmt, self.output = fmt, output
        self.subtitles = fmt in SUBTITLE_FORMATS
        self.lines: list[str] = []
        self.names: set[str] = set()

    def add(self, t: Transcript) -> None:
        from asr.writers import format_line, format_subtitles

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


# --- evaluate.py ----------------------------------------------------------------------------------


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description="WER and CER of a checkpoint on test sets, with S/D/I, per-speaker WER, "
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
    _add_model_args(parser)
    _add_decoding_args(parser, several=True)
    _add_window_args(parser)
    return _run(parser.prog, _evaluate, parser.parse_args(argv))


def _evaluate(args: argparse.Namespace) -> int:
    from asr.decoding import GreedyDecoder
    from asr.evaluate import evaluate, load_test_set, write_report, write_utterances

    names, args.decoder = list(dict.fromkeys(args.decoder or [])), None
    base = _decode_options(args)
    names = names or ["greedy"] + (["beam"] if base.decoder == "beam" else [])
    greedy = DecodeOptions(word_pause=base.word_pause)
    recognizer = _recognizer(args, greedy)
    options = {n: base.replace(decoder="beam") if n == "beam" else greedy for n in names}
    decoders = {n: build_decoder(o, recognizer.tokenizer) if n == "beam" else GreedyDecoder(recognizer.tokenizer.blank)
                for n, o in options.items()}
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    reports, problems = [], 0  # problems: test sets left out, and sets with unreadable audio
    for data in args.data:
        try:
            utterances = load_test_set(data)
        except ManifestError as err:
            _error("evaluate.py", str(err))
            problems += 1
            continue
        if not utterances:  # a folder whose audio files all failed to open
            _error("evaluate.py", f"{data}: no readable utterance: nothing to evaluate")
            problems += 1
            continue
        name = Path(data).stem if Path(data).is_file() else Path(data).name
        report = evaluate(recognizer, utterances, name, args.batch_seconds, decoders=decoders)
        if len(report.failed) == len(utterances):  # no WER for a set of which nothing was heard
            _error("evaluate.py", f"{data}: none of the {len(utterances)} audio file(s) could be read "
                                  f"({report.failed[0][0]}: {report.failed[0][1]}, ...): nothing to evaluate")
            problems += 1
            continue
        for path, reason in report.failed:
            _error("evaluate.py", f"{path}: {reason} (counted as deleted)")
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


# --- tune_lm.py -----------------------------------------------------------------------------------


def tune_lm_main(argv: Sequence[str] | None = None) -> int:
    from asr.tuning import DEFAULT_EXTENSIONS, DEFAULT_LM_WEIGHTS, DEFAULT_WORD_SCORES

    parser = argparse.ArgumentParser(
        prog="tune_lm.py", description="Tune the LM weight and word bonus of beam search on a dev set and store "
                                       "the best beside the checkpoint (<checkpoint>.decoding.json), where "
                                       "asr.load() and decode.py/evaluate.py pick them up.",
        epilog="example:\n  tune_lm.py runs/synthetic/latest/checkpoints/last.ckpt data/synthetic/dev --lm lm.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("dev", help="dev set: a manifest .jsonl, a LibriSpeech-layout folder, or audio + .txt files")
    _add_decoding_args(parser, tuning=True)
    parser.add_argument("--lm-weights", type=float, nargs="+", default=list(DEFAULT_LM_WEIGHTS),
                        help="LM weights tried (default %(default)s)")
    parser.add_argument("--word-scores", type=float, nargs="+", default=list(DEFAULT_WORD_SCORES),
                        help="word bonuses tried (default %(default)s)")
    parser.add_argument("--extend", type=int, default=DEFAULT_EXTENSIONS, metavar="N",
                        help="while the best point is on the grid's edge, grow the grid past it around that "
                             "point, at most N times (default %(default)s; 0: the grid as given)")
    parser.add_argument("--cache", help="log-probs cache (default: eval/<dev>.logprobs.pt beside the checkpoint)")
    parser.add_argument("--save", help="where to store the chosen options (default: <checkpoint>.decoding.json)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-seconds", type=float, default=DEFAULT_BATCH_SECONDS)
    _add_window_args(parser)
    return _run(parser.prog, _tune, parser.parse_args(argv))


def _tune(args: argparse.Namespace) -> int:
    from asr.evaluate import load_test_set
    from dataclasses import asdict

    from asr.tuning import Tuning, dev_set, grid_points, grid_search, score

    if args.extend < 0:
        raise _Fail(f"--extend {args.extend}: must be 0 (the grid as given) or more")
    base = _decode_options(args).replace(decoder="beam")
    recognizer = _recognizer(args, DecodeOptions(word_pause=base.word_pause))
    name = Path(args.dev).stem if Path(args.dev).is_file() else Path(args.dev).name
    cache = args.cache or Path(args.checkpoint).resolve().parent / "eval" / f"{name}.logprobs.pt"
    dev = dev_set(recognizer, load_test_set(args.dev), args.checkpoint, cache, args.batch_seconds)
    for failure in dev.failed:
        _error("tune_lm.py", f"{failure} (left out)")
    if not dev.emissions:
        raise _Fail(f"{args.dev}: no readable utterance to tune on")
    greedy_wer, greedy_errors = score(recognizer, dev, recognizer.decoder)
    print(f"{name}: {len(dev.emissions)} utterances, greedy WER {100 * greedy_wer:.2f}%", file=sys.stderr)
    tuning = Tuning(greedy_wer, greedy_errors, grid_search(
        recognizer, dev, base, args.lm_weights, args.word_scores, extend=args.extend, on_trial=lambda t: print(
            f"  lm_weight {t.lm_weight:g}, word_score {t.word_score:g}: WER {100 * t.wer:.2f}%", file=sys.stderr)))
    grid = set(grid_points(args.lm_weights, args.word_scores))
    grown = [t for t in tuning.trials if (t.lm_weight, t.word_score) not in grid]
    if grown:
        print(f"the best point was on the grid's edge: {len(grown)} points past it tried "
              f"(lm_weight up to {max(t.lm_weight for t in tuning.trials):g}, word_score "
              f"{min(t.word_score for t in tuning.trials):g} to {max(t.word_score for t in tuning.trials):g})",
              file=sys.stderr)
    best, greedy = tuning.best, f"greedy {100 * tuning.greedy_wer:.2f}%"
    rows = [[t.lm_weight, t.word_score, 100 * t.wer] for t in sorted(tuning.trials, key=lambda t: t.errors)[:10]]
    print(format_table(["lm_weight", "word_score", "WER %"], [["greedy", "", 100 * tuning.greedy_wer], *rows]))
    point = f"lm_weight {best.lm_weight:g}, word_score {best.word_score:g}: WER {100 * best.wer:.2f}%"
    save = Path(args.save) if args.save else options_path(args.checkpoint)
    if not tuning.beats_greedy:
        kept = f"; {save} is left as it was" if save.exists() else ""
        print(f"no point beats greedy decoding (best: {point}, {greedy}): nothing stored, decode greedy{kept}")
        return 0
    chosen = base.replace(lm_weight=best.lm_weight, word_score=best.word_score)
    saved = save_options(chosen, save, dev_set=str(Path(args.dev).resolve()), utterances=len(dev.emissions),
                         greedy_wer=tuning.greedy_wer, wer=best.wer, grid=[asdict(t) for t in tuning.trials])
    print(f"best: {point} ({greedy}); stored in {saved}")
    return 0


# --- build_lm.py ----------------------------------------------------------------------------------


def build_lm_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_lm.py", description="Build a Kneser-Ney n-gram LM (tab-separated ARPA, as KenLM reads it) "
                                        "from text, or fix an ARPA file whose fields are separated by spaces.",
        epilog="examples:\n  build_lm.py data/synthetic/train -o lm/words3.arpa\n"
               "  build_lm.py corpus.txt --unit char --order 6 -o lm/chars6.arpa\n"
               "  build_lm.py --fix-tabs broken.arpa -o fixed.arpa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="*", help="text files (one sentence per line, .gz allowed), manifests "
                                               "(.jsonl, their 'text') or LibriSpeech-layout folders (*.trans.txt)")
    parser.add_argument("-o", "--output", required=True, help="the ARPA file to write")
    parser.add_argument("--order", type=int, help="n-gram order (default: 3 for words, 6 for characters)")
    parser.add_argument("--unit", choices=UNITS, default="word",
                        help="word: for lexicon search (default); char: for lexicon-free search")
    parser.add_argument("--fix-tabs", metavar="ARPA", help="rewrite this space-separated ARPA file with tabs")
    return _run(parser.prog, _build_lm, parser.parse_args(argv))


def _build_lm(args: argparse.Namespace) -> int:
    from asr.lm import build_arpa, fix_arpa_tabs, read_texts

    if args.fix_tabs:
        n = fix_arpa_tabs(args.fix_tabs, args.output)
        print(f"{args.output}: {n} n-grams rewritten with tabs")
        return 0
    if not args.text:
        raise _Fail("give text files or manifests to build from (or --fix-tabs ARPA)")
    if args.order is not None and args.order < 1:
        raise _Fail(f"--order must be at least 1, got {args.order}")
    model = build_arpa(read_texts(args.text), args.output, args.order, args.unit)
    counts = ", ".join(f"{n + 1}-grams {len(o)}" for n, o in enumerate(model.orders))
    print(f"{args.output}: {model.order}-gram {args.unit} LM, {len(model.orders[0]) - 1} tokens in the vocabulary; "
          f"{counts}")
    return 0


# --- export.py ------------------------------------------------------------------------------------


def export_main(argv: Sequence[str] | None = None) -> int:
    from asr.export import EXPORT_TOLERANCE, INT8_TOLERANCE, ONNX_OPSET, QUANTIZATIONS

    parser = argparse.ArgumentParser(
        prog="export.py", description="Export a checkpoint's acoustic model, feature extraction included, to "
                                      "TorchScript (runs with torch alone) or ONNX (ONNX Runtime, opset "
                                      f"{ONNX_OPSET}), float32 or int8, checked against PyTorch. The file carries "
                                      "the tokenizer: decode.py and asr.load() take it in place of the checkpoint.",
        epilog="examples:\n  export.py model.ckpt -o model.ts\n  export.py model.ckpt -o model.int8.onnx --quantize int8\n"
               "  then: m = torch.jit.load('model.ts'); log_probs, frames = m(waveforms, lengths)\n"
               "  or:   decode.py model.int8.onnx talk.flac",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    parser.add_argument("-o", "--output", required=True, help="the file to write: .ts or .pt (TorchScript), .onnx (ONNX)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="dynamic int8 quantization of the LSTMs and the "
                                                                   "output layer (default: float32)")
    parser.add_argument("--tolerance", type=float,
                        help=f"float32: largest log-prob difference accepted (default {EXPORT_TOLERANCE:g}); int8: "
                             "largest mean total-variation distance between the per-frame distributions "
                             f"(default {INT8_TOLERANCE:g})")
    return _run(parser.prog, _export, parser.parse_args(argv))


def _export(args: argparse.Namespace) -> int:
    from asr.export import FORMAT_NAMES, ExportError, export, export_format

    try:
        diff, tolerance = export(args.checkpoint, args.output, args.quantize, args.tolerance)
    except ExportError as err:
        raise _Fail(str(err)) from None
    kind = "mean probability distance (total variation)" if args.quantize else "largest log-prob difference"
    size = Path(args.output).stat().st_size / 1e6
    print(f"{args.output}: {FORMAT_NAMES[export_format(args.output)]} {args.quantize or 'float32'}, "
          f"{size:.1f} MB; {kind} from PyTorch float32 {diff:.1e} (tolerance {tolerance:g})")
    return 0


# --- make_manifest.py -----------------------------------------------------------------------------


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
