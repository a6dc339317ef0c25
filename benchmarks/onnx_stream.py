"""ONNX streaming vs PyTorch streaming: real-time factor of many streams stepped together on one CPU thread.

    python benchmarks/onnx_stream.py                          # the default recipe's model, random weights
    python benchmarks/onnx_stream.py --checkpoint best.ckpt --streams 1 10 50 --seconds 8

Model: ``--checkpoint``, else the default recipe's (``recipe=synthetic``: ModelConfig's defaults, 40
mels, its normalization) with random weights (speed does not depend on them). It streams at ``--chunk``
and ``--right-context`` seconds: in PyTorch through :class:`~asr.model.streaming.StreamingModel`, in ONNX
Runtime through the file ``scripts/export.py --stream`` writes (``asr.inference.stream_export``, float32
and int8), run by :class:`~asr.inference.onnx_stream.OnnxStreamingModel`.

Each of ``--streams`` streams gets ``--seconds`` of speech-like audio (``check_inputs``' voice) in
pieces of ``--piece`` seconds, one piece per stream per round, every stream stepped after each round
(one batch per window, as a server does); then every stream is finished. Real-time factor = wall
seconds of accept + step / seconds of audio of all streams (so 1 / RTF streams keep up in real
time on one thread), the best of ``--repeats`` runs. Decoding is not included (the same for both).
Also printed: the largest log-prob difference between the two runtimes (normalize=global or none:
the same numbers; utterance: each estimates the statistics its own way) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from asr.inference.emitters import open_model
from asr.inference.export import check_inputs
from asr.inference.stream_export import export_stream
from asr.model.checkpoint import load_checkpoint
from asr.model.streaming import StreamingModel
from asr.report import format_table
from inference import random_checkpoint  # the benchmarks' shared random-weight model (benchmarks/inference.py)

FORMS = {"ORT fp32": None, "ORT int8": "int8"}  # name -> quantization


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a checkpoint (default: the default recipe's model, random weights)")
    p.add_argument("--recipe", default="synthetic", help="recipe of the random model (default synthetic)")
    p.add_argument("--chunk", type=float, default=0.4)
    p.add_argument("--right-context", type=float, default=0.4)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    p.add_argument("--piece", type=float, default=0.1, help="seconds of audio per accept")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def stream_audio(sample_rate: int, streams: int, seconds: float) -> list[torch.Tensor]:
    """``streams`` speech-like recordings of ``seconds``, each starting elsewhere in a longer one."""
    voice = check_inputs(sample_rate, (seconds + streams * 0.05,))[0][0]
    n = int(seconds * sample_rate)
    return [voice[int(i * 0.05 * sample_rate):][:n].clone() for i in range(streams)]


def run_streams(engine, audio: list[torch.Tensor], piece: int) -> tuple[float, list[torch.Tensor]]:
    """Wall seconds to stream every recording (pieces, a step after each round, then finish) and the log-probs."""
    states = [engine.new_state() for _ in audio]
    got: list[list[torch.Tensor]] = [[] for _ in audio]
    start = time.perf_counter()
    with torch.inference_mode():
        for position in range(0, max(x.numel() for x in audio), piece):
            for x, state in zip(audio, states):
                engine.accept(state, x[position: position + piece])
            for parts, out in zip(got, engine.step(states)):
                parts.append(out.log_probs)
        for state in states:
            engine.finish(state)
        for parts, out in zip(got, engine.step(states)):
            parts.append(out.log_probs)
    return time.perf_counter() - start, [torch.cat(parts) for parts in got]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(args.recipe, Path(tmp) / "m.ckpt")
        model = load_checkpoint(checkpoint).model
        engines = {"PyTorch": StreamingModel(model, args.chunk, args.right_context)}
        exports = {}
        for name, quantize in FORMS.items():
            path = Path(tmp) / f"model.{quantize or 'fp32'}.stream.onnx"
            started = time.perf_counter()
            done = export_stream(checkpoint, path, quantize, chunk=args.chunk, right_context=args.right_context,
                                 threads=args.threads)
            exports[name] = {"export_seconds": time.perf_counter() - started, "check": done.difference,
                             "MB": path.stat().st_size / 1e6}
            engines[name] = open_model(path, threads=args.threads)[0].stream_engine
        rate = model.feature_config.sample_rate
        print(f"{os.cpu_count()} CPU cores, {args.threads} thread(s), load average "
              f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}, torch {torch.__version__}; "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, normalize="
              f"{model.feature_config.normalize}, chunk {args.chunk} s, right context {args.right_context} s, "
              f"latency {engines['PyTorch'].latency:.2f} s")
        for name, e in exports.items():
            print(f"{name}: exported and checked in {e['export_seconds']:.0f} s, {e['MB']:.1f} MB, "
                  f"check {e['check']:.1e}")
        results = []
        for streams in args.streams:
            audio = stream_audio(rate, streams, args.seconds)
            row = {"streams": streams}
            outputs = {}
            for name, engine in engines.items():
                run_streams(engine, audio[:2], int(args.piece * rate))  # warm-up
                best = float("inf")
                for _ in range(args.repeats):
                    wall, outputs[name] = run_streams(engine, audio, int(args.piece * rate))
                    best = min(best, wall)
                row[name] = best / (streams * args.seconds)
            row["max |diff| fp32"] = max(float((a - b).abs().max())
                                         for a, b in zip(outputs["PyTorch"], outputs["ORT fp32"]))
            results.append(row)
            print(f"{streams} streams: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "streams"),
                  flush=True)
        headers = ["streams", "PyTorch RTF", "ORT fp32 RTF", "ORT int8 RTF", "fp32 speed-up", "int8 speed-up",
                   "max |log-prob diff| fp32"]
        table = [[r["streams"], f"{r['PyTorch']:.4f}", f"{r['ORT fp32']:.4f}", f"{r['ORT int8']:.4f}",
                  f"{r['PyTorch'] / r['ORT fp32']:.2f}x", f"{r['PyTorch'] / r['ORT int8']:.2f}x",
                  f"{r['max |diff| fp32']:.1e}"] for r in results]
        print(format_table(headers, table))
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "exports": exports, "results": results},
                                                  indent=2))


if __name__ == "__main__":
    main()
