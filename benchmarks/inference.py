"""CPU inference: real-time factor and WER of every form a model is deployed in.

    python benchmarks/inference.py --synthetic runs/synthetic/latest/checkpoints/best.ckpt \\
        --synthetic-test data/synthetic/test.jsonl \\
        --real runs/mini_librispeech/latest/checkpoints/best.ckpt --real-test /tmp/mls16/test.jsonl

Models: the default recipe's (``--synthetic CKPT``), the LibriSpeech recipe's (``--librispeech
CKPT``) and a model of real speech (``--real CKPT``, e.g. the mini_librispeech recipe's); a recipe
given no checkpoint gets random weights of its shapes (``recipe=synthetic``, ``recipe=librispeech``),
for speed only. Forms: the checkpoint in PyTorch, and each file ``scripts/export.py`` writes
(``asr.inference.export.export``): the ExportedProgram (``.pt2``, float32), TorchScript int8, ONNX
float32 and int8 in ONNX Runtime, all loaded by ``asr.load`` as ``decode.py`` loads them.

Speed: features + model + greedy decoding of waveforms already in memory (file reading
excluded), through the Recognizer's own batching (``Recognizer.transcribe_waveforms``): batch 1
(one utterance at a time) and batched by duration (``--batch-seconds`` of padded audio), on each of
``--threads`` CPU threads; real-time factor = processing seconds / audio seconds, the best of
``--repeats`` runs over the first ``--seconds`` of audio of the speed set (the model's test set, else
the other one). Accuracy: greedy WER of every form on its test set, files read as decode.py reads
them, next to the float32 checkpoint's.

Prints Markdown tables with the load average, which says how much of the machine the numbers had
(and, with ``--json``, writes every number to a file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from asr.audio import load_audio
from asr.data.manifest import Utterance, read_manifest
from asr.decoding.options import DecodeOptions
from asr.inference.evaluate import evaluate
from asr.inference.export import export
from asr.inference.recognizer import Recognizer
from asr.model.checkpoint import checkpoint_metadata, load_checkpoint
from asr.report import format_table
from asr.training.config import compose_config
from asr.training.train import build_model, build_tokenizer

FORMS = {  # name -> exported file (None: the checkpoint itself), quantization
    "PyTorch fp32": (None, None),
    "ExportedProgram fp32": ("model.pt2", None),
    "TorchScript int8": ("model.int8.ts", "int8"),
    "ORT fp32": ("model.onnx", None),
    "ORT int8": ("model.int8.onnx", "int8"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic", help="checkpoint of the default recipe (default: random weights of its shapes)")
    p.add_argument("--librispeech", help="checkpoint of the LibriSpeech recipe (default: random weights of its shapes)")
    p.add_argument("--real", help="checkpoint of a model of real speech (e.g. the mini_librispeech recipe's)")
    p.add_argument("--synthetic-test", help="test manifest for --synthetic (data/synthetic/test.jsonl)")
    p.add_argument("--real-test", help="test manifest for --real (held-out speakers)")
    p.add_argument("--models", nargs="+", default=["synthetic", "librispeech", "real"],
                   help="which of the models to measure")
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=list(FORMS), metavar="FORM",
                   help=f"forms to measure (default all: {', '.join(FORMS)})")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-seconds", type=float, nargs="+", default=[16.0, 60.0],
                   help="padded audio per batch when batched; several: the fastest is reported (default 16 60)")
    p.add_argument("--seconds", type=float, default=120.0, help="audio in the speed set (first utterances)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-wer", action="store_true", help="speed only")
    p.add_argument("--work", help="folder for the exported files (default: a temporary one)")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def random_checkpoint(recipe: str, path: Path) -> Path:
    """A checkpoint of ``recipe``'s model and tokenizer with random weights (for speed only)."""
    cfg = compose_config(f"recipe={recipe}")
    tokenizer = build_tokenizer(cfg.text)
    torch.manual_seed(0)
    model = build_model(cfg, len(tokenizer)).eval()
    torch.save({"asr": checkpoint_metadata(model, tokenizer, {}),
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def speed_set(manifest: str, sample_rate: int, seconds: float) -> tuple[list[torch.Tensor], float]:
    """The first utterances of ``manifest`` up to ``seconds`` of audio, as waveforms."""
    waves, total = [], 0.0
    for utt in read_manifest(manifest):
        if total >= seconds:
            break
        waves.append(load_audio(utt.audio, sample_rate))
        total += waves[-1].numel() / sample_rate
    return waves, total


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def real_time_factor(recognizer: Recognizer, waves: list[torch.Tensor], audio: float, batched: float | None,
                     repeats: int) -> tuple[float, float]:
    """Best of ``repeats``: wall-clock seconds and CPU seconds (all threads of the process) per
    audio second, of features + model + greedy."""
    recognizer.transcribe_waveforms(waves[:2], batched)  # warm-up: allocations, kernels chosen
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        if batched:
            recognizer.transcribe_waveforms(waves, batched)
        else:
            for w in waves:
                recognizer.transcribe_waveforms([w])
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall / audio, cpu / audio


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(name: str, checkpoint: Path, trained: bool, test: str | None, speed_manifest: str, work: Path,
            args: argparse.Namespace) -> list[dict]:
    rows = []
    sample_rate = load_checkpoint(checkpoint).model.feature_config.sample_rate
    waves, audio = speed_set(speed_manifest, sample_rate, args.seconds)
    utterances: list[Utterance] = read_manifest(test) if (test and trained and not args.no_wer) else []
    greedy = DecodeOptions("greedy")
    for form in args.forms:
        file, quantize = FORMS[form]
        path, diff = checkpoint, None
        if file:
            path = work / f"{name}.{file}"
            started = time.perf_counter()
            diff, _ = export(checkpoint, path, quantize)
            print(f"{name}: {form} exported in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.1f} MB, "
                  f"largest difference {diff:.1e}", file=sys.stderr)
        row = {"model": name, "form": form, "trained": trained, "size_mb": path.stat().st_size / 1e6,
               "difference": diff, "audio_seconds": audio, "utterances": len(waves), "load_start": load_average()}
        for threads in args.threads:
            set_threads(threads)
            recognizer = Recognizer.load(path, "cpu", greedy, threads=threads)
            for mode, budgets in (("batch 1", [None]), ("batched", args.batch_seconds)):
                results = {b: real_time_factor(recognizer, waves, audio, b, args.repeats) for b in budgets}
                budget = min(results, key=lambda b: results[b][0])
                (rtf, cpu), key = results[budget], f"{mode}, {threads} thr"
                row[f"rtf {key}"], row[f"cpu {key}"], row[f"budget {key}"] = rtf, cpu, budget
                row[f"all {key}"] = {str(b): r for b, r in results.items()}
                print(f"{name}: {form}, {threads} thread(s), {mode}{f' ({budget:g} s)' if budget else ''}: "
                      f"RTF {rtf:.4f} ({1 / rtf:.0f}x real time), {cpu:.4f} CPU s per audio s", file=sys.stderr)
        if utterances:
            set_threads(max(args.threads))
            recognizer = Recognizer.load(path, "cpu", greedy, threads=max(args.threads))
            report = evaluate(recognizer, utterances, Path(test).stem, max(args.batch_seconds))
            row["wer"], row["cer"] = report.decoders["decoder"].wer, report.decoders["decoder"].cer
            print(f"{name}: {form}: WER {100 * row['wer']:.2f} % on {Path(test).name}", file=sys.stderr)
        row["load_end"] = load_average()
        rows.append(row)
    return rows


def tables(rows: list[dict], args: argparse.Namespace) -> str:
    keys = [f"{m}, {t} thr" for t in args.threads for m in ("batch 1", "batched")]
    headers = ["model", "form", "MB", *(f"RTF {k}" for k in keys), "best x real time", "CPU s / audio s (best)",
               "WER %", "load avg (1/5/15 min)"]
    table = []
    for r in rows:
        best = min(keys, key=lambda k: r[f"rtf {k}"])
        wer = f"{100 * r['wer']:.2f}" if "wer" in r else "-"
        table.append([r["model"] + ("" if r["trained"] else " (random weights)"), r["form"], f"{r['size_mb']:.1f}",
                      *(f"{r[f'rtf {k}']:.4f}" for k in keys), f"{1 / r[f'rtf {best}']:.0f}",
                      f"{min(r[f'cpu {k}'] for k in keys):.4f}", wer, r["load_start"]])
    return format_table(headers, table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        speech = {"synthetic": args.synthetic_test or args.real_test, "real": args.real_test or args.synthetic_test}
        if not (speech["synthetic"] or speech["real"]):
            print("inference.py: error: give --synthetic-test or --real-test (the speed set is read from them)",
                  file=sys.stderr)
            return 2
        models = {"synthetic": ("default recipe (synthetic)", args.synthetic, "synthetic", args.synthetic_test,
                                speech["synthetic"]),
                  "librispeech": ("LibriSpeech recipe (ds2)", args.librispeech, "librispeech", args.real_test,
                                  speech["real"]),
                  "real": ("mini_librispeech", args.real, None, args.real_test, speech["real"])}
        rows = []
        for key in args.models:
            name, checkpoint, recipe, test, speed_manifest = models[key]
            if checkpoint is None and recipe is None:
                print(f"inference.py: {name}: no checkpoint given (--{key}); left out", file=sys.stderr)
                continue
            trained = checkpoint is not None
            path = Path(checkpoint) if trained else random_checkpoint(recipe, work / f"{key}.random.ckpt")
            rows += measure(key, path, trained, test, speed_manifest, work, args)
    print(tables(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
