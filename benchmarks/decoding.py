"""Decoding benchmark on the built-in synthetic corpus (test voices never heard in training).

    python benchmarks/decoding.py runs/synthetic/latest/checkpoints/last.ckpt [--corpus data/synthetic]

1. Builds a word 3-gram (Kneser-Ney, ``asr.decoding.arpa.build_arpa`` as ``scripts/build_lm.py`` does) from the
   train split's transcripts, tunes the LM weight and word bonus on the dev split (``asr.inference.tuning``, as
   ``scripts/tune_lm.py`` does), and reports test WER/CER for greedy and for beam search + LM.
2. Concatenates held-out test sentences into one recording of ``--long-minutes`` (with ``--gap``
   seconds of silence between sentences, beside the corpus's own 0.1-0.2 s margins) and compares
   the WER of the long-file path (cut at pauses, each piece read alone, merged by frame time) with the WER of the
   same sentences decoded one by one; it also measures the word timestamps against the true
   speech onset and offset of each sentence (where the first and last word were recognised).
3. Measures the real-time factor (processing seconds / audio seconds: reading, features and model,
   run once, plus each decoder's own time on the same log-probs; model and LM loading excluded) on
   ``--threads`` CPU threads, for greedy and beam + LM.

Prints a Markdown table (and, with ``--json``, writes every number to a JSON file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import torch

from asr.data.manifest import Utterance, from_librispeech
from asr.decoding.ngram import build_arpa
from asr.decoding.options import DecodeOptions
from asr.inference.recognizer import Recognizer
from asr.inference.tuning import best_trial, dev_set, grid_search
from asr.metrics import char_errors, word_errors
from asr.report import format_table

SPEECH_DB = 40.0  # a sample within this many dB of an utterance's peak is speech (as the corpus trims)
LM_WEIGHTS = (0.25, 0.5, 1.0, 1.5, 2.0)  # the tuning grid (alpha)
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0)  # (beta)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--corpus", default="data/synthetic", help="synthetic corpus root (train/, dev/, test/)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--work", help="folder for the LM, caches and the long recording (default: a temporary one)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--lm-order", type=int, default=3)
    p.add_argument("--beam-size", type=int, default=50)
    p.add_argument("--long-minutes", type=float, default=5.0)
    p.add_argument("--gap", type=float, default=0.3, help="seconds of silence added between sentences")
    p.add_argument("--batch-seconds", type=float, default=120.0)
    return p.parse_args(argv)


def build_lm(train: list[Utterance], work: Path, order: int) -> Path:
    lm = work / f"train.{order}gram.arpa"
    build_arpa([u.text for u in train], lm, order=order, unit="word")
    return lm


def tuned_options(recognizer: Recognizer, dev: list[Utterance], checkpoint: str, lm: Path, work: Path,
                  beam_size: int) -> tuple[DecodeOptions, dict]:
    """Beam + LM options with the weights that decode the dev split best."""
    base = DecodeOptions("beam", beam_size=beam_size, lm=str(lm))
    dev_data = dev_set(recognizer, dev, checkpoint, work / "dev.logprobs.pt")
    trials = grid_search(recognizer, dev_data, base, LM_WEIGHTS, WORD_SCORES)
    best = best_trial(trials)
    return base.replace(lm_weight=best.lm_weight, word_score=best.word_score), {
        "dev_wer": best.wer, "lm_weight": best.lm_weight, "word_score": best.word_score}


def timed_emissions(recognizer: Recognizer, paths: list, batch_seconds: float) -> tuple[list, float]:
    """(log-probs of each file, wall seconds): reading, features and the model, on the CPU threads set."""
    start = time.perf_counter()
    emissions = list(recognizer.emissions(paths, batch_seconds))
    return emissions, time.perf_counter() - start


def timed_decode(recognizer: Recognizer, emissions: list, words: bool = False) -> tuple[list, float]:
    """(transcripts, wall seconds) of decoding ``emissions`` with the recognizer's decoder."""
    start = time.perf_counter()
    transcripts = [recognizer.decode(e, words=words) for e in emissions]
    return transcripts, time.perf_counter() - start


def long_recording(test: list[Utterance], minutes: float, gap: float, rate: int, path: Path) -> list[dict]:
    """Concatenate test sentences (in order) into ``path``; return each one's text and true speech span."""
    pieces, sentences, offset = [], [], 0.0
    silence = np.zeros(int(round(gap * rate)), dtype=np.float32)
    for utt in test:
        if offset >= minutes * 60:
            break
        wave, file_rate = sf.read(utt.audio, dtype="float32")
        if file_rate != rate:
            raise SystemExit(f"{utt.audio}: {file_rate} Hz; the benchmark expects the corpus at {rate} Hz")
        loud = np.flatnonzero(np.abs(wave) > np.abs(wave).max() * 10 ** (-SPEECH_DB / 20))
        sentences.append({"text": utt.text, "onset": offset + loud[0] / rate, "offset": offset + (loud[-1] + 1) / rate})
        pieces += [wave, silence]
        offset += (len(wave) + len(silence)) / rate
    sf.write(path, np.concatenate(pieces), rate, subtype="PCM_16")
    return sentences


def timestamp_errors(recognizer: Recognizer, words, sentences: list[dict]) -> dict:
    """|start - true onset| of each sentence's first word and |end - true offset| of its last word,
    where the hypothesis has that word right (jiwer alignment), in seconds."""
    norm = recognizer.tokenizer.normalize
    ref_words, owner = [], []
    for i, s in enumerate(sentences):
        ws = norm(s["text"]).split()
        ref_words += ws
        owner += [(i, j == 0, j == len(ws) - 1) for j in range(len(ws))]
    hyp = [w.word for w in words]
    out = jiwer.process_words(" ".join(ref_words), " ".join(hyp))
    starts, ends = [], []
    for chunk in out.alignments[0]:
        if chunk.type != "equal":
            continue
        for r, h in zip(range(chunk.ref_start_idx, chunk.ref_end_idx), range(chunk.hyp_start_idx, chunk.hyp_end_idx)):
            i, first, last = owner[r]
            if first:
                starts.append(abs(words[h].start - sentences[i]["onset"]))
            if last:
                ends.append(abs(words[h].end - sentences[i]["offset"]))
    stat = lambda xs: {"n": len(xs), "median": statistics.median(xs), "p90": float(np.percentile(xs, 90))} if xs else {}  # noqa: E731
    return {"sentence_start": stat(starts), "sentence_end": stat(ends)}


def test_set(recognizers: dict[str, Recognizer], test: list[Utterance], batch_seconds: float) -> tuple[dict, dict]:
    """WER, CER and RTF of each decoder on the test split; the model runs once, each decoder is timed
    on the same log-probs (RTF = model time + that decoder's time, over the audio duration)."""
    any_recognizer = next(iter(recognizers.values()))
    emissions, model_seconds = timed_emissions(any_recognizer, [u.audio for u in test], batch_seconds)
    audio = sum(e.duration for e in emissions)
    refs = [any_recognizer.tokenizer.normalize(u.text) for u in test]
    results, texts = {}, {}
    for name, recognizer in recognizers.items():
        transcripts, decode_seconds = timed_decode(recognizer, emissions)
        texts[name] = [t.text for t in transcripts]
        results[name] = {"wer": word_errors(refs, texts[name]).rate, "cer": char_errors(refs, texts[name]).rate,
                         "utterances": len(test), "audio_seconds": audio,
                         "rtf": (model_seconds + decode_seconds) / audio,
                         "rtf_model": model_seconds / audio, "rtf_decoder": decode_seconds / audio}
    return results, texts


def long_vs_short(recognizers: dict[str, Recognizer], test: list[Utterance], one_by_one: dict[str, list[str]],
                  args: argparse.Namespace, work: Path) -> dict:
    """The long-file path against the same sentences decoded one by one (``one_by_one``: the test
    split's transcripts, in order)."""
    any_recognizer = next(iter(recognizers.values()))
    sentences = long_recording(test, args.long_minutes, args.gap, any_recognizer.sample_rate, work / "long.wav")
    reference = " ".join(any_recognizer.tokenizer.normalize(s["text"]) for s in sentences)
    (emission,), model_seconds = timed_emissions(any_recognizer, [work / "long.wav"], args.batch_seconds)
    result = {"sentences": len(sentences), "seconds": emission.duration}
    for name, recognizer in recognizers.items():
        (long,), decode_seconds = timed_decode(recognizer, [emission], words=True)
        result[name] = {"wer_long": word_errors([reference], [long.text]).rate,
                        "wer_one_by_one": word_errors([reference], [" ".join(one_by_one[name][: len(sentences)])]).rate,
                        "rtf_long": (model_seconds + decode_seconds) / emission.duration,
                        "timestamps": timestamp_errors(recognizer, long.words, sentences)}
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    splits = {s: from_librispeech(corpus / s, progress=False)[0] for s in ("train", "dev", "test")}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="asr-decoding-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    greedy = Recognizer.load(args.checkpoint, "cpu", DecodeOptions())
    lm = build_lm(splits["train"], work, args.lm_order)
    options, tuning = tuned_options(greedy, splits["dev"], args.checkpoint, lm, work, args.beam_size)
    recognizers = {"greedy": greedy, "beam_lm": Recognizer.load(args.checkpoint, "cpu", options)}
    results = {"checkpoint": str(Path(args.checkpoint).resolve()), "threads": args.threads,
               "load_average_at_start": os.getloadavg()[0],
               "lm": {"order": args.lm_order, "train_sentences": len(splits["train"]), **tuning}}
    results["test"], texts = test_set(recognizers, splits["test"], args.batch_seconds)
    results["long"] = long_vs_short(recognizers, splits["test"], texts, args, work)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return results


def table(r: dict) -> str:
    t, long = r["test"], r["long"]
    rows = []
    for name, label in (("greedy", "greedy"), ("beam_lm", f"beam {r['lm']['order']}-gram LM")):
        ts = long[name]["timestamps"]
        rows.append([label, 100 * t[name]["wer"], 100 * t[name]["cer"], 100 * long[name]["wer_one_by_one"],
                     100 * long[name]["wer_long"], f"{t[name]['rtf']:.3f}", f"{long[name]['rtf_long']:.3f}",
                     f"{ts['sentence_start'].get('median', float('nan')):.2f} / {ts['sentence_end'].get('median', float('nan')):.2f}"])
    head = ["decoder", "test WER %", "test CER %", f"{long['seconds'] / 60:.1f}-min rec. WER %, one by one",
            "long-file WER %", "RTF test", "RTF long", "timestamp error s (start / end, median)"]
    note = (f"\nLM weight {r['lm']['lm_weight']:g}, word bonus {r['lm']['word_score']:g} (tuned on dev); "
            f"{r['threads']} CPU threads (load average {r['load_average_at_start']:.1f} at the start); "
            f"{t['greedy']['utterances']} test utterances, "
            f"{t['greedy']['audio_seconds'] / 60:.1f} min; long recording: {long['sentences']} sentences")
    return format_table(head, rows) + note


if __name__ == "__main__":
    main(sys.argv[1:])
