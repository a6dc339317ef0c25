"""Real speech: train a recipe for a time budget on real recordings, then decode held-out speakers with
greedy search, a lexicon beam without LM, and beam + word / character n-grams built from the training
transcripts (weights tuned on dev); prints the results table and the training curve, JSON on request.

Data: a LibriSpeech-layout folder split by speaker (``--test-speakers``, ``--dev-speakers``, the rest
trains), or ready manifests (``--train --dev --test``). Example, Mini LibriSpeech's 16-speaker sample:

    python benchmarks/real_speech.py --librispeech ../shared/data/mini-librispeech-16/LibriSpeech \\
        --test-speakers 1970 7859 3664 6848 --dev-speakers 4640 7312 \\
        --recipe mini_librispeech --minutes 60 --json mls16.json
    python benchmarks/real_speech.py ... --recipe synthetic --minutes 60   # the default recipe's settings

``trainer.max_time`` is the budget; extra Hydra overrides follow the options (e.g. ``trainer.max_epochs=30``).
An LM's row falls back to greedy ("greedy kept") when no tuned point beats greedy on dev, as
``scripts/tune_lm.py`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_wer import budget_string, curve, machine_line  # noqa: E402 - the benchmarks' shared curve reader

from asr.data.manifest import Utterance, from_librispeech, read_manifest, write_manifest  # noqa: E402
from asr.decoding.arpa import lexicon_from_words, write_lexicon  # noqa: E402
from asr.decoding.beam import build_decoder, spell  # noqa: E402
from asr.decoding.ngram import build_arpa  # noqa: E402
from asr.decoding.options import DecodeOptions  # noqa: E402
from asr.inference.evaluate import evaluate  # noqa: E402
from asr.inference.recognizer import Recognizer  # noqa: E402
from asr.inference.tuning import DEFAULT_LM_WEIGHTS, DEFAULT_WORD_SCORES, best_trial, dev_set, grid_search, score  # noqa: E402
from asr.report import format_table  # noqa: E402
from asr.training.config import compose_config  # noqa: E402
from asr.training.train import train  # noqa: E402

CHAR_LM_ORDER = 6  # as scripts/build_lm.py's example for --unit char


def split_by_speaker(utterances: Sequence[Utterance], test: Sequence[str], dev: Sequence[str]) -> dict[str, list]:
    """Speaker-disjoint train/dev/test: the named speakers are held out, every other one trains."""
    splits: dict[str, list] = {"train": [], "dev": [], "test": []}
    for u in utterances:
        splits["test" if u.speaker in test else "dev" if u.speaker in dev else "train"].append(u)
    for name, utts in splits.items():
        if not utts:
            raise SystemExit(f"real_speech.py: error: no utterance in the {name} split; check the speaker ids")
    return splits


def make_manifests(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    if args.librispeech:
        utterances, problems = from_librispeech(args.librispeech, progress=False)
        for p in problems:
            print(f"real_speech.py: {p} (left out)", file=sys.stderr)
        splits = split_by_speaker(utterances, args.test_speakers, args.dev_speakers)
        return {name: write_manifest(work / f"{name}.jsonl", utts) for name, utts in splits.items()}
    if not (args.train and args.dev and args.test):
        raise SystemExit("real_speech.py: error: give --librispeech FOLDER or all of --train, --dev and --test")
    return {"train": Path(args.train), "dev": Path(args.dev), "test": Path(args.test)}


def tuned(recognizer: Recognizer, dev, base: DecodeOptions, lm_weights: Sequence[float],
          word_scores: Sequence[float], greedy_errors: int) -> tuple[DecodeOptions | None, dict[str, Any]]:
    """The best grid point on dev, or None when none beats greedy (greedy is kept)."""
    trials = grid_search(recognizer, dev, base, lm_weights, word_scores)
    best = best_trial(trials)
    info = {"lm_weight": best.lm_weight, "word_score": best.word_score, "dev_wer": 100 * best.wer}
    return (base.replace(lm_weight=best.lm_weight, word_score=best.word_score)
            if best.errors < greedy_errors else None), info


def decode_table(checkpoint: Path, manifests: dict[str, Path], work: Path, beam_size: int) -> dict[str, Any]:
    """Greedy, lexicon beam, beam + word 3-gram and beam + char n-gram on the test split."""
    train_texts = [u.text for u in read_manifest(manifests["train"])]
    recognizer = Recognizer.load(checkpoint, "cpu", DecodeOptions())
    tokenizer = recognizer.tokenizer
    words3, chars = work / "words3.arpa", work / f"chars{CHAR_LM_ORDER}.arpa"
    build_arpa(train_texts, words3, order=3, unit="word", normalizer=tokenizer.normalizer)
    build_arpa(train_texts, chars, order=CHAR_LM_ORDER, unit="char", normalizer=tokenizer.normalizer)
    words = sorted({w for t in train_texts for w in tokenizer.normalize(t).split()})
    lexicon, _ = lexicon_from_words(words, lambda w: spell(tokenizer, w))
    lexicon_path = write_lexicon(lexicon, work / "train_words.lexicon")

    dev = dev_set(recognizer, read_manifest(manifests["dev"]), checkpoint, cache=None)
    greedy_wer, greedy_errors = score(recognizer, dev, recognizer.decoder)
    beam = DecodeOptions(decoder="beam", beam_size=beam_size)
    candidates = {
        "lexicon beam, no LM": (beam.replace(lexicon=str(lexicon_path), lm_weight=0.0), [0.0], DEFAULT_WORD_SCORES),
        "beam + word 3-gram": (beam.replace(lm=str(words3), lexicon=str(lexicon_path)), DEFAULT_LM_WEIGHTS,
                               DEFAULT_WORD_SCORES),
        f"beam + char {CHAR_LM_ORDER}-gram": (beam.replace(lm=str(chars), lm_unit="char"), DEFAULT_LM_WEIGHTS,
                                              DEFAULT_WORD_SCORES),
    }
    decoders = {"greedy": recognizer.decoder}
    tuning = {"greedy": {"dev_wer": 100 * greedy_wer}}
    for name, (options, weights, scores) in candidates.items():
        if name.startswith("lexicon"):  # no LM to weigh: every word score is tried, the best one is used as is
            trials = grid_search(recognizer, dev, options, weights, scores)
            best = best_trial(trials)
            chosen = options.replace(word_score=best.word_score)
            tuning[name] = {"word_score": best.word_score, "dev_wer": 100 * best.wer}
        else:
            chosen, tuning[name] = tuned(recognizer, dev, options, weights, scores, greedy_errors)
            tuning[name]["greedy_kept"] = chosen is None
        decoders[name] = build_decoder(chosen, tokenizer) if chosen else recognizer.decoder
    report = evaluate(recognizer, read_manifest(manifests["test"]), "test", progress=False, decoders=decoders)
    rows = {}
    for name, r in report.decoders.items():
        rows[name] = {"wer": 100 * r.wer, "cer": 100 * r.cer, "substitutions": r.words.substitutions,
                      "deletions": r.words.deletions, "insertions": r.words.insertions, **tuning[name]}
    return {"test_utterances": len(report.utterances), "test_words": report.words.reference_length, "rows": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech", help="a LibriSpeech-layout folder (split by speaker)")
    parser.add_argument("--test-speakers", nargs="*", default=[], help="speaker ids held out for test")
    parser.add_argument("--dev-speakers", nargs="*", default=[], help="speaker ids held out for dev")
    parser.add_argument("--train", help="train manifest (instead of --librispeech)")
    parser.add_argument("--dev", help="dev manifest")
    parser.add_argument("--test", help="test manifest")
    parser.add_argument("--recipe", default="mini_librispeech", help="asr/conf/recipe/<name>.yaml (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training-time budget (default %(default)s)")
    parser.add_argument("--beam-size", type=int, default=50)
    parser.add_argument("--work-dir", help="manifests, run folder and LMs (default: a temp folder)")
    parser.add_argument("--checkpoint", help="skip training: decode this checkpoint")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.hidden_size=320")
    args = parser.parse_args(argv)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="asr-real-"))
    work.mkdir(parents=True, exist_ok=True)
    manifests = make_manifests(args, work)
    run_dir = work / "run"
    rows: list[dict] = []
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        cfg = compose_config(f"recipe={args.recipe}", "data=manifest", "logger=csv",
                             *(f"data.corpus.splits.{k}={v}" for k, v in manifests.items()),
                             f"trainer.max_time={budget_string(args.minutes)}", "trainer.enable_progress_bar=false",
                             *args.overrides)
        train(cfg, run_dir)
        checkpoint = run_dir / "checkpoints" / "best.ckpt"
        rows = curve(run_dir / "metrics.csv")
        print(format_table(["epoch", "step", "minutes", "train loss", "dev WER %", "dev CER %"],
                           [[r["epoch"], r["step"], r["minutes"], r["train_loss"], r["dev_wer"], r["dev_cer"]]
                            for r in rows]))
    table = decode_table(checkpoint, manifests, work, args.beam_size)
    print(format_table(["decoder", "test WER %", "CER %", "sub", "del", "ins", "dev WER %", "tuned"],
                       [[name, r["wer"], r["cer"], r["substitutions"], r["deletions"], r["insertions"], r["dev_wer"],
                         "greedy kept" if r.get("greedy_kept") else
                         f"lm_weight {r['lm_weight']:g}, word_score {r['word_score']:g}" if "lm_weight" in r else
                         f"word_score {r['word_score']:g}" if "word_score" in r else ""]
                        for name, r in table["rows"].items()]))
    machine = machine_line()
    print(f"\n{table['test_utterances']} test utterances ({table['test_words']} words); recipe {args.recipe}, "
          f"{args.minutes:g} min budget, overrides {args.overrides}; {machine}; checkpoint {checkpoint}")
    if args.json:
        Path(args.json).write_text(json.dumps({"recipe": args.recipe, "minutes": args.minutes,
                                               "overrides": args.overrides, "machine": machine, "curve": rows,
                                               "checkpoint": str(checkpoint), **table}, indent=2))


if __name__ == "__main__":
    main()
