"""How much the end-to-end test's result depends on the CPU: the test's training run
(tests/test_train.py) under several instruction sets and torch thread counts.

Usage:
    python benchmarks/cpu_spread.py                                  # 3 ISAs x 1 and 2 threads
    python benchmarks/cpu_spread.py --isa AVX2,avx2-all --threads 1  # some settings only
    python benchmarks/cpu_spread.py trainer.max_epochs=20 optim.lr=1e-3   # the test's config, overridden

Each setting is a fresh process with the instruction set capped by ``ONEDNN_MAX_CPU_ISA`` (oneDNN:
convolutions, LSTMs), or for ``avx2-all`` also ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own kernels)
and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (matrix products), the nearest this machine gets to an
AVX2-only CPU; the thread count is ``OMP_NUM_THREADS``. ``default`` leaves all of them unset.
All settings share one generated corpus. Prints a Markdown table: test WER untrained and trained,
the mean train loss of the first and last 3 logged steps and its ratio, CPU minutes of the setting.
On a busy machine, ``OMP_WAIT_POLICY=PASSIVE`` in the environment stops idle OpenMP threads from
spinning (it changes how threads wait, not how the work is split).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.test_train: the benchmark runs exactly what the test runs

ISA_ENV = {
    "default": {},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2-all": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
ENV_KEYS = sorted({k for env in ISA_ENV.values() for k in env} | {"OMP_NUM_THREADS"})


def _isas(text: str) -> list[str]:
    isas = text.split(",")
    for isa in isas:
        if isa not in ISA_ENV:
            raise argparse.ArgumentTypeError(f"unknown ISA {isa!r}: use {', '.join(ISA_ENV)}")
    return isas


def _threads(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of thread counts") from None


def measure(corpus_root: Path, folder: Path, overrides: list[str]) -> dict[str, float]:
    """One training run of the end-to-end test in this process (the child's side)."""
    import torch

    from tests.test_train import _column, end_to_end_overrides, train_and_measure

    m = train_and_measure([*end_to_end_overrides(corpus_root), *overrides], folder)
    return {**m, "dev_wer_per_epoch": _column(folder / "run" / "metrics.csv", "val/wer"),
            "threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", type=_isas, default="default,AVX2,AVX512_CORE",
                        help=f"comma-separated, of {', '.join(ISA_ENV)} (default %(default)s)")
    parser.add_argument("--threads", type=_threads, default="1,2",
                        help="comma-separated torch thread counts (default %(default)s)")
    parser.add_argument("--work-dir", default=None, help="corpus and run folders (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one setting, write JSON here
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on top of the test's, e.g. trainer.max_epochs=40")
    args = parser.parse_args()

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="asr-cpu-spread-"))
    corpus_root = work / "corpus" / "synthetic"
    if args.child:
        result = measure(corpus_root, Path(args.child).parent, args.overrides)
        Path(args.child).write_text(json.dumps(result))
        return

    from hydra.utils import instantiate

    from asr.training.config import compose_config
    from tests.test_train import end_to_end_overrides

    instantiate(compose_config(*end_to_end_overrides(corpus_root), *args.overrides).data.corpus).prepare()
    rows = []
    print("| ISA | threads | untrained WER % | test WER % | best dev WER % | train loss first -> last | ratio "
          "| CPU min |")
    print("|---|---|---|---|---|---|---|---|")
    for isa in args.isa:
        for threads in args.threads:
            run = work / f"{isa}-{threads}"
            run.mkdir(parents=True, exist_ok=True)
            env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
            env.update(ISA_ENV[isa], OMP_NUM_THREADS=str(threads))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, __file__, "--work-dir", str(work), "--child", str(run / "result.json"),
                            *args.overrides], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            m = json.loads((run / "result.json").read_text())
            m.update(isa=isa, cpu_min=(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60)
            rows.append(m)
            print(f"| {isa} | {m['threads']} | {100 * m['start_wer']:.1f} | {100 * m['wer']:.1f} "
                  f"| {100 * m['val/wer_best']:.1f} | {m['first_loss']:.1f} -> {m['last_loss']:.2f} "
                  f"| {m['last_loss'] / m['first_loss']:.3f} | {m['cpu_min']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"overrides": args.overrides, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
