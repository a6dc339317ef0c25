"""Training throughput: the whole Lightning step vs the bare recurrent stack vs plain ``nn.LSTM``.

Usage:
    python benchmarks/gpu_throughput.py                  # CUDA: the LibriSpeech recipe's shapes, batches 32/64/budget
    python benchmarks/gpu_throughput.py --device cpu     # small shapes (asr/conf/model/small.yaml), batch 8: about a minute
    python benchmarks/gpu_throughput.py --batch-sizes 32 64 --steps 30 --json runs/benchmarks/h100.json

For each batch configuration (a fixed batch size, or the recipe's padded-seconds budget), on
batches whose durations follow a LibriSpeech-like distribution (``librispeech_like_durations``):

  (a) the whole training step as Lightning runs it: a real ``lightning.Trainer`` with the recipe's
      trainer settings (precision, gradient clipping, progress bar) fits the real ``ASRModule``
      (log-mel + SpecAugment on the device, conv front end, BiLSTM, CTC, AdamW + schedule) on
      pre-made random-waveform batches (pinned on CUDA) served by a DataLoader, so the loop's
      own overhead, host-to-device copies and any host synchronisation are in the time, and audio
      decoding is not (it is measured on its own, below). Once with each ``rnn_impl``.
  (b) the bare split recurrent stack (``asr.model.lstm.SplitBiLSTM``), forward + backward, same shapes.
  (c) the peers' stack: one ``nn.LSTM(bidirectional=True, num_layers=N)`` on packed sequences
      (deepspeech.pytorch; exact, lengths go to the host) and on the padded batch (NeMo; the
      backward direction then starts in the padding, so it is not exact).

Audio seconds per second count real (unpadded) audio. TFLOP/s counts only the BiLSTM matmuls,
``asr.model.lstm.training_flops_per_frame`` (48 H (I + H) per bidirectional layer and frame: forward,
backward and weight gradients), over valid (unpadded) frames after the front end's subsampling; the
front end, head, CTC and optimizer are left out, so every row uses the same count and padding
shows up as lost TFLOP/s. On CUDA the rows run under autocast as the recipe trains (bf16-mixed;
cuDNN runs the LSTM itself in fp16 under bf16 autocast) and are timed with CUDA events after
warm-up steps. Also reported: padding waste of ``DurationBatchSampler`` on the distribution,
peak GPU memory, synchronising CUDA calls in one training step, and the DataLoader's own rate
(real ``ASRDataModule``: ``AudioDataset`` + ``Collate`` over generated FLAC files, with the
recipe's worker count). The targets are checked at the end (PASS/FAIL).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from asr.data.batching import Batch, DurationBatchSampler  # noqa: E402
from asr.data.manifest import Utterance, write_manifest  # noqa: E402
from asr.files import atomic_write  # noqa: E402
from asr.model.lstm import PackedBiLSTM, SplitBiLSTM, training_flops_per_frame  # noqa: E402
from asr.report import format_table  # noqa: E402

CONF = ROOT / "asr" / "conf"
# The LibriSpeech recipe's model when the recipe has none yet: small.yaml's conv (2 layers, 4x in
# time, 80 mels -> 640 features) with deepspeech.pytorch's recurrent size.
RECIPE_SHAPES = ["model.rnn_layers=5", "model.hidden_size=1024"]
GPU_PRECISION = "bf16-mixed"  # when the recipe's trainer says 32-true
CHARS_PER_SECOND = 15  # LibriSpeech transcripts: about 2.7 words of 5.5 characters per second
TRAIN_960_UTTERANCES = 281_241  # utterances in LibriSpeech train-960: the sample for the padding waste
POOL_UTTERANCES = 20_000  # durations the benchmark batches are drawn from
DURATION_SEED = 960
EQUIVALENCE_NOISE_FACTOR = 2.0  # split vs packed may differ by at most this x (packed autocast vs fp32)
EQUIVALENCE_FLOOR = 1e-4  # ... or this much, whichever is larger (fp32 on CPU has no autocast noise)
WASTE_BUCKETS = (20, 50, 100)  # bucket counts the padding waste is also reported for
TARGETS = {"b_over_c": 2.0, "a_over_b": 0.9, "padding_waste": 0.05, "loader_over_a": 3.0}

log = logging.getLogger("gpu_throughput")


def librispeech_like_durations(n: int, seed: int = DURATION_SEED) -> np.ndarray:
    """Seconds per utterance, shaped like LibriSpeech train-960 (not measured from it): 70% around
    14.5 s (10-17.5 s), 20% short (1-10 s), 10% long (16-35 s, mostly under 22 s)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    bulk = np.clip(rng.normal(14.5, 1.5, n), 10.0, 17.5)
    short = rng.uniform(1.0, 10.0, n)
    long = np.clip(16.0 + rng.exponential(3.0, n), 16.0, 35.0)
    return np.round(np.choose(kind, [bulk, short, long]), 3)


def padding_waste(durations: np.ndarray, batches: list[list[int]]) -> float:
    """Fraction of the padded batch seconds that is padding."""
    real = sum(float(durations[b].sum()) for b in batches)
    padded = sum(len(b) * float(durations[b].max()) for b in batches)
    return 1.0 - real / padded


# ----------------------------------------------------------------------------- configuration
@dataclass
class Setup:
    cfg: Any  # the composed Hydra config
    source: str  # where the shapes and data settings came from
    device: torch.device
    precision: str  # Lightning precision of the (a) rows
    batch_seconds: float
    num_buckets: int
    num_workers: int
    progress_bar: bool  # the TQDM bar reads the logged loss on the host at every refresh

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.precision)


def make_setup(args: argparse.Namespace) -> Setup:
    from asr.training.config import compose_config

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    shapes = args.shapes if args.shapes != "auto" else "recipe" if device.type == "cuda" else "small"
    if shapes == "small":
        overrides, source = [], "asr/conf/recipe/synthetic.yaml + asr/conf/model/small.yaml (small shapes)"
    elif (CONF / "recipe" / "librispeech.yaml").is_file():
        overrides, source = ["recipe=librispeech"], "asr/conf/recipe/librispeech.yaml"
    elif (CONF / "model" / "ds2.yaml").is_file():
        overrides, source = ["model=ds2", "data=manifest"], "asr/conf/model/ds2.yaml + asr/conf/data/manifest.yaml"
    else:
        overrides, source = [*RECIPE_SHAPES, "data=manifest"], f"{' '.join(RECIPE_SHAPES)} + asr/conf/data/manifest.yaml"
    cfg = compose_config(*overrides, *args.override)
    precision = str(cfg.trainer.precision)
    if device.type == "cuda" and "mixed" not in precision:
        precision = GPU_PRECISION
    if device.type == "cpu":
        precision = "32-true"
    return Setup(cfg, source, device, precision,
                 args.batch_seconds or float(cfg.data.batch_seconds), int(cfg.data.num_buckets),
                 args.workers if args.workers is not None else int(cfg.data.num_workers),
                 args.progress_bar if args.progress_bar is not None else bool(cfg.trainer.enable_progress_bar))


def batch_plans(durations: np.ndarray, setup: Setup, sizes: list[int], count: int) -> dict[str, list[list[int]]]:
    """``count`` batches (dataset indices) per configuration: each fixed size, then the budget."""
    plans = {}
    for size in sizes:
        sampler = DurationBatchSampler(durations.tolist(), batch_seconds=size * float(durations.max()) + 1,
                                       num_buckets=setup.num_buckets, seed=size, max_batch_size=size)
        plans[f"batch {size}"] = [b for b in sampler if len(b) == size][:count]
    sampler = DurationBatchSampler(durations.tolist(), setup.batch_seconds, setup.num_buckets, seed=0)
    plans[f"budget {setup.batch_seconds:g} s"] = list(sampler)[:count]
    return plans


# ----------------------------------------------------------------------------- timing
class Clock:
    """Elapsed seconds between ``start`` and ``stop``: CUDA events on a GPU, the host clock on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self._t0
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self._begin.elapsed_time(end) / 1000


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


@dataclass
class Row:
    config: str
    name: str
    batches: int  # timed steps
    utterances: int
    audio_seconds: float  # real audio in the timed steps
    padded_fraction: float
    lstm_flop: float  # BiLSTM training FLOPs of the timed steps
    seconds: float
    peak_gib: float | None

    @property
    def audio_per_second(self) -> float:
        return self.audio_seconds / self.seconds

    @property
    def tflops(self) -> float:
        return self.lstm_flop / self.seconds / 1e12

    def cells(self) -> list[Any]:
        mem = f"{self.peak_gib:.1f}" if self.peak_gib is not None else "-"
        return [self.config, self.name, f"{self.utterances / self.batches:.1f}", f"{100 * self.padded_fraction:.1f}",
                f"{self.audio_per_second:.0f}", f"{self.tflops:.2f}", f"{1000 * self.seconds / self.batches:.0f}", mem]


# ----------------------------------------------------------------------------- (a) the Lightning step
class StepTimer(L.Callback):
    """Times steps ``warmup`` .. last, and counts the synchronising CUDA calls of the last warm-up
    step, from its start to its end: training_step, backward, optimizer step
    (``torch.cuda.set_sync_debug_mode("warn")`` turns each into a warning)."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device, self.clock = warmup, device, Clock(device)
        self.seconds, self.syncs = math.nan, None
        self._catcher: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            _reset_memory(self.device)
            self.clock.start()
        if batch_idx == self.warmup - 1 and self.device.type == "cuda":
            self._catcher = warnings.catch_warnings(record=True)
            self._caught = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.syncs = sum("synchroniz" in str(w.message) for w in self._caught)
            self._catcher.__exit__(None, None, None)
            self._catcher = None
        if batch_idx == trainer.max_steps - 1:
            self.seconds = self.clock.stop()


def synthetic_batch(durations: np.ndarray, sample_rate: int, vocab: int, gen: torch.Generator) -> Batch:
    """Random waveforms of the given durations and random transcripts of a plausible length."""
    lengths = torch.from_numpy(np.round(durations * sample_rate).astype(np.int64))
    waves = torch.randn(len(lengths), int(lengths.max()), generator=gen) * 0.1
    waves *= torch.arange(waves.shape[1])[None, :] < lengths[:, None]
    target_lengths = torch.from_numpy(np.maximum(1, np.round(durations * CHARS_PER_SECOND)).astype(np.int64))
    targets = torch.randint(1, vocab, (len(lengths), int(target_lengths.max())), generator=gen)
    return Batch(waves, lengths, targets, target_lengths, [""] * len(lengths), list(range(len(lengths))),
                 sample_rate, float(durations.sum()))


def time_lightning_step(setup: Setup, impl: str, batches: list[Batch], warmup: int) -> tuple[float, float | None, int | None]:
    """Seconds for the steps after ``warmup`` of a real Trainer.fit; peak GiB; syncs in one step."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from asr.training.module import ASRModule
    from asr.training.optim import OptimConfig
    from asr.training.train import build_model, build_tokenizer

    cfg = OmegaConf.merge(setup.cfg, {"model": {"rnn_impl": impl}})
    tokenizer = build_tokenizer(cfg.text)
    L.seed_everything(0, verbose=False)
    module = ASRModule(build_model(cfg, len(tokenizer)), tokenizer, OptimConfig(**cfg.optim))
    timer = StepTimer(warmup, setup.device)
    callbacks = [timer] + ([instantiate(cfg.callbacks.throughput)] if cfg.callbacks.get("throughput") else [])
    trainer = instantiate(cfg.trainer, accelerator=setup.device.type, devices=1, num_nodes=1, strategy="auto",
                          precision=setup.precision, max_steps=len(batches), max_epochs=-1, max_time=None,
                          logger=False, callbacks=callbacks, enable_checkpointing=False, enable_model_summary=False,
                          limit_val_batches=0, num_sanity_val_steps=0, val_check_interval=1.0,
                          check_val_every_n_epoch=1, default_root_dir=tempfile.gettempdir(),
                          enable_progress_bar=setup.progress_bar)
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    _reset_memory(setup.device)
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds, _peak_gib(setup.device), timer.syncs


# ----------------------------------------------------------------------------- (b), (c) bare stacks
def recurrent_inputs(lengths_list: list[torch.Tensor], size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random (batch, frames, size) inputs, zero on padding, with their lengths, on the device."""
    out = []
    for lengths in lengths_list:
        x = torch.randn(len(lengths), int(lengths.max()), size, device=device)
        lengths = lengths.to(device)
        out.append((x * (torch.arange(x.shape[1], device=device)[None, :] < lengths[:, None])[..., None], lengths))
    return out


def time_stack(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], params: list[nn.Parameter],
               inputs: list[tuple[torch.Tensor, torch.Tensor]], warmup: int, setup: Setup) -> tuple[float, float | None]:
    """Seconds for forward + backward of ``run`` over ``inputs[warmup:]``; peak GiB."""
    clock = Clock(setup.device)
    dtype = setup.autocast_dtype
    for i, (x, lengths) in enumerate(inputs):
        if i == warmup:
            _reset_memory(setup.device)
            clock.start()
        x = x.detach().requires_grad_()  # the conv front end below needs the input gradient
        with torch.autocast(setup.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = run(x, lengths)
        out.float().sum().backward()
        for p in params:
            p.grad = None
    return clock.stop(), _peak_gib(setup.device)


def stacks(setup: Setup, input_size: int) -> dict[str, tuple[nn.Module, Callable]]:
    """The stacks compared, with the same weights: name -> (module, call)."""
    m = setup.cfg.model
    torch.manual_seed(0)
    packed = PackedBiLSTM(input_size, m.hidden_size, m.rnn_layers, m.dropout).to(setup.device).train()
    split = SplitBiLSTM(input_size, m.hidden_size, m.rnn_layers, m.dropout).to(setup.device).train()
    split.load_state_dict(packed.state_dict())
    return {
        "(b) split stack": (split, split),
        "(c) nn.LSTM packed": (packed, packed),
        "(c) nn.LSTM padded (inexact)": (packed, lambda x, lengths: packed.lstm(x)[0]),
    }


def equivalence(setup: Setup, input_size: int, lengths: torch.Tensor) -> dict[str, float]:
    """Max |split - packed| over valid frames under the rows' autocast, against the autocast noise
    of packed itself (vs fp32 without TF32), in eval mode."""
    models = {name: mod.eval() for name, (mod, _) in stacks(setup, input_size).items() if "padded" not in name}
    split, packed = models["(b) split stack"], models["(c) nn.LSTM packed"]
    (x, lengths), = recurrent_inputs([lengths], input_size, setup.device)
    valid = (torch.arange(x.shape[1], device=setup.device)[None, :] < lengths[:, None])[..., None]
    dtype = setup.autocast_dtype
    with torch.no_grad(), torch.autocast(setup.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        a, b = split(x, lengths).float(), packed(x, lengths).float()
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        reference = packed(x, lengths).float()
    diff = float(((a - b) * valid).abs().max())
    noise = float(((b - reference) * valid).abs().max())
    return {"max_abs_diff": diff, "autocast_noise": noise,
            "tolerance": max(EQUIVALENCE_NOISE_FACTOR * noise, EQUIVALENCE_FLOOR)}


# ----------------------------------------------------------------------------- the data loader alone
def write_audio_pool(folder: Path, durations: np.ndarray, sample_rate: int, seed: int = 0) -> list[Utterance]:
    """FLAC files of low-passed noise with a syllable-rate envelope (less entropy than white noise,
    so FLAC works about as hard as on speech) and random-letter transcripts."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    utts = []
    for i, seconds in enumerate(durations):
        n = int(round(seconds * sample_rate))
        wave = np.convolve(rng.standard_normal(n + 7), np.ones(8) / 8, mode="valid")
        wave *= 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * np.arange(n) / sample_rate)
        path = folder / f"utt{i:05d}.flac"
        sf.write(path, (0.2 * wave).astype(np.float32), sample_rate, format="FLAC", subtype="PCM_16")
        chars = rng.choice(letters, max(1, int(seconds * CHARS_PER_SECOND)))
        text = " ".join("".join(chars[k : k + 5]) for k in range(0, len(chars), 6))
        utts.append(Utterance(path.stem, str(path), n / sample_rate, text, "spk"))
    return utts


def loader_rate(setup: Setup, tokenizer: Any, frame_rate: float, batches: int, pool_files: int) -> dict[str, float]:
    """Audio seconds per second that the real training DataLoader delivers with nobody consuming."""
    from asr.data.corpora.base import ManifestCorpus
    from asr.data.datamodule import ASRDataModule

    data, sample_rate = setup.cfg.data, int(setup.cfg.features.sample_rate)
    skip = 4 * max(1, setup.num_workers) + 1  # worker start-up and the first prefetched batches
    per_batch = setup.batch_seconds / float(np.mean(librispeech_like_durations(1000)))
    repeats = math.ceil((skip + batches + 2) * per_batch * 1.5 / pool_files)
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_audio_pool(Path(tmp), librispeech_like_durations(pool_files, DURATION_SEED + 1), sample_rate)
        manifest = write_manifest(Path(tmp) / "train.jsonl", [
            Utterance(f"{u.id}-{r}", u.audio, u.duration, u.text, u.speaker) for r in range(repeats) for u in pool])
        module = ASRDataModule(ManifestCorpus({"train": manifest, "dev": manifest}), tokenizer, sample_rate,
                               batch_seconds=setup.batch_seconds, num_buckets=setup.num_buckets,
                               num_workers=setup.num_workers, min_duration=float(data.min_duration),
                               max_duration=float(data.max_duration), speeds=list(data.speeds),
                               pin_memory=setup.device.type == "cuda", output_frame_rate=frame_rate)
        module.setup("fit")
        iterator = iter(module.train_dataloader())
        for _ in range(skip):
            next(iterator)
        start, audio = time.perf_counter(), 0.0
        for _ in range(batches):
            audio += next(iterator).audio_seconds
        seconds = time.perf_counter() - start
        del iterator
    return {"audio_per_second": audio / seconds, "batches": batches, "workers": setup.num_workers,
            "speeds": list(data.speeds)}


# ----------------------------------------------------------------------------- one configuration
def lstm_frames(model: Any, durations: np.ndarray) -> torch.Tensor:
    """``(batch,)`` int64: frames the recurrent stack sees for utterances of ``durations`` seconds."""
    from asr.model.features import frame_lengths

    cfg = model.feature_config
    samples = torch.from_numpy(np.round(durations * cfg.sample_rate).astype(np.int64))
    return model.subsampling.output_lengths(frame_lengths(samples, cfg.hop_length))


def measure_config(config: str, plan: list[list[int]], pool: np.ndarray, setup: Setup, model: Any,
                   warmup: int, impls: list[str]) -> tuple[list[Row], dict[str, int | None]]:
    """All rows of one batch configuration; and the synchronising calls per step of each impl."""
    sample_rate = int(setup.cfg.features.sample_rate)
    durations = [pool[b] for b in plan]
    frames = [lstm_frames(model, d) for d in durations]
    m = setup.cfg.model
    per_frame = training_flops_per_frame(model.subsampling.output_size, m.hidden_size, m.rnn_layers)
    timed = durations[warmup:]
    audio = float(sum(d.sum() for d in timed))
    padded = 1.0 - audio / sum(len(d) * float(d.max()) for d in timed)
    flop = float(sum(int(f.sum()) for f in frames[warmup:])) * per_frame
    row = lambda name, seconds, peak: Row(config, name, len(timed), sum(len(d) for d in timed),  # noqa: E731
                                          audio, padded, flop, seconds, peak)
    rows, syncs = [], {}
    gen = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(d, sample_rate, model.head.out_features, gen) for d in durations]
    if setup.device.type == "cuda":  # pinned beforehand, as the DataLoader's pinning thread would have
        batches = [b.pin_memory() for b in batches]
    for impl in impls:
        seconds, peak, syncs[impl] = time_lightning_step(setup, impl, batches, warmup)
        rows.append(row(f"(a) Lightning step, {impl}", seconds, peak))
        log.info("%s: %s", config, rows[-1].cells())
    del batches
    inputs = recurrent_inputs(frames, model.subsampling.output_size, setup.device)
    for name, (module, call) in stacks(setup, model.subsampling.output_size).items():
        seconds, peak = time_stack(call, list(module.parameters()), inputs, warmup, setup)
        rows.append(row(name, seconds, peak))
        log.info("%s: %s", config, rows[-1].cells())
    return rows, syncs


# ----------------------------------------------------------------------------- targets and report
def check_targets(rows: list[Row], fixed: list[str], equiv: dict[str, float], waste: float,
                  loader: dict[str, float]) -> list[dict[str, Any]]:
    def rate(config: str, prefix: str) -> float:
        return max(r.audio_per_second for r in rows if r.config == config and r.name.startswith(prefix))

    checks = []
    for config in dict.fromkeys(r.config for r in rows):
        b = rate(config, "(b)")
        if config in fixed:
            checks.append(("(b) split >= 2 x (c) fastest nn.LSTM", config, b / rate(config, "(c)"), TARGETS["b_over_c"]))
        checks.append(("(a) step >= 0.9 x (b)", config, rate(config, "(a) Lightning step, split") / b, TARGETS["a_over_b"]))
    consumed = max(r.audio_per_second for r in rows if r.name == "(a) Lightning step, split")
    checks.append(("loader >= 3 x (a)", f"{loader['workers']} workers", loader["audio_per_second"] / consumed,
                   TARGETS["loader_over_a"]))
    out = [{"target": t, "where": w, "measured": v, "required": f">= {req:g}", "pass": v >= req} for t, w, v, req in checks]
    out.append({"target": "padding waste <= 5%", "where": "DurationBatchSampler, train-960-like", "measured": waste,
                "required": f"<= {TARGETS['padding_waste']:g}", "pass": waste <= TARGETS["padding_waste"]})
    out.append({"target": "(b) == (c) packed within autocast noise", "where": "outputs, valid frames",
                "measured": equiv["max_abs_diff"], "required": f"<= {equiv['tolerance']:.2g}",
                "pass": equiv["max_abs_diff"] <= equiv["tolerance"]})
    return out


def print_report(header: dict[str, Any], rows: list[Row], checks: list[dict[str, Any]], pipeline: list[list[Any]]) -> None:
    print()
    for key, value in header.items():
        print(f"{key}: {value}")
    print()
    print(format_table(["batches", "what", "utts/step", "padding %", "audio s/s", "LSTM TFLOP/s", "ms/step",
                        "peak GiB"], [r.cells() for r in rows]))
    print()
    print(format_table(["input pipeline", "value"], pipeline))
    print()
    print(format_table(["target", "where", "measured", "required", "result"],
                       [[c["target"], c["where"], f"{c['measured']:.3g}", c["required"], "PASS" if c["pass"] else "FAIL"]
                        for c in checks]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available) | cuda | cpu")
    parser.add_argument("--shapes", default="auto", choices=["auto", "recipe", "small"],
                        help="recipe: the LibriSpeech recipe's model and data settings; small: asr/conf/model/small.yaml "
                             "and the synthetic recipe's; auto: recipe on CUDA, small on CPU")
    parser.add_argument("--configs", nargs="+", default=None,
                        help="batch sizes and/or 'budget' (the recipe's padded seconds); default 32 64 budget on "
                             "CUDA, 8 on CPU")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 CUDA, 1 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 20 CUDA, 3 CPU)")
    parser.add_argument("--batch-seconds", type=float, default=None, help="padded-seconds budget (default: recipe's)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: recipe's)")
    parser.add_argument("--loader-batches", type=int, default=None, help="batches timed (default 30 CUDA, 8 CPU)")
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None,
                        help="the TQDM bar in the (a) rows (default: the trainer config's)")
    parser.add_argument("--impls", nargs="+", default=["split", "packed"], choices=["split", "packed"],
                        help="rnn_impl of the (a) rows; split is always measured")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's); 1 is steadier on a shared machine")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    parser.add_argument("override", nargs="*", default=[], help="Hydra overrides, e.g. model.hidden_size=768")
    args = parser.parse_args(argv)
    args.impls = ["split", *(i for i in dict.fromkeys(args.impls) if i != "split")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]  # other work on the machine skews CPU timings
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "asr"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec|could not find the monitored)")
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = make_setup(args)
    cuda = setup.device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    steps = args.steps if args.steps is not None else (20 if cuda else 3)
    configs = args.configs or (["32", "64", "budget"] if cuda else ["8"])

    from asr.training.train import build_model, build_tokenizer

    tokenizer = build_tokenizer(setup.cfg.text)
    model = build_model(setup.cfg, len(tokenizer))
    pool = librispeech_like_durations(POOL_UTTERANCES)
    sizes = [int(c) for c in configs if c != "budget"]
    plans = batch_plans(pool, setup, sizes, warmup + steps)
    if "budget" not in configs:
        plans = {k: v for k, v in plans.items() if not k.startswith("budget")}
    rows, syncs = [], {}
    for config, plan in plans.items():
        config_rows, syncs[config] = measure_config(config, plan, pool, setup, model, warmup, args.impls)
        rows += config_rows
    first_batch = pool[next(iter(plans.values()))[0]]
    equiv = equivalence(setup, model.subsampling.output_size, lstm_frames(model, first_batch))
    train960 = librispeech_like_durations(TRAIN_960_UTTERANCES)
    wastes = {n: padding_waste(train960, list(DurationBatchSampler(train960.tolist(), setup.batch_seconds, n, seed=0)))
              for n in sorted({setup.num_buckets, *WASTE_BUCKETS})}
    waste = wastes[setup.num_buckets]
    loader = loader_rate(setup, tokenizer, model.output_frame_rate,
                         args.loader_batches or (30 if cuda else 8), pool_files=200 if cuda else 40)
    checks = check_targets(rows, [f"batch {s}" for s in sizes], equiv, waste, loader)
    header = _header(setup, model, pool, warmup, steps, load)
    print_report(header, rows, checks, _pipeline_cells(setup, rows, wastes, loader, syncs, equiv))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.json) as f:
            json.dump({**header, "rows": [{**vars(r), "audio_per_second": r.audio_per_second, "tflops": r.tflops}
                                          for r in rows],
                       "padding_waste": waste, "padding_waste_by_buckets": wastes, "loader": loader,
                       "syncs_per_step": syncs, "equivalence": equiv, "checks": checks}, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def _pipeline_cells(setup: Setup, rows: list[Row], wastes: dict[int, float], loader: dict[str, Any],
                    syncs: dict[str, Any], equiv: dict[str, float]) -> list[list[str]]:
    consumed = max(r.audio_per_second for r in rows if r.name == "(a) Lightning step, split")
    return [[f"padding waste, DurationBatchSampler ({setup.batch_seconds:g} s) on 281k train-960-like utterances",
             ", ".join(f"{100 * w:.1f} % ({n} buckets)" for n, w in wastes.items())],
            [f"DataLoader alone ({loader['workers']} workers, speeds {loader['speeds']})",
             f"{loader['audio_per_second']:.0f} audio s/s"],
            ["fastest (a) Lightning step (split) consumes", f"{consumed:.0f} audio s/s"],
            ["synchronising CUDA calls in one training step",
             json.dumps(syncs) if setup.device.type == "cuda" else "n/a (CPU)"],
            ["split vs packed outputs: max |diff| (autocast noise)",
             f"{equiv['max_abs_diff']:.2e} ({equiv['autocast_noise']:.2e})"]]


def _header(setup: Setup, model: Any, pool: np.ndarray, warmup: int, steps: int, load: float) -> dict[str, Any]:
    m = setup.cfg.model
    device = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "CPU"
    return {
        "device": f"{device}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores, "
                  f"load average {load:.1f} at the start",
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "shapes from": setup.source,
        "model": f"{len(m.conv)} conv (x{model.subsampling.time_stride} in time) -> {model.subsampling.output_size} "
                 f"features -> {m.rnn_layers} BiLSTM x {m.hidden_size} per direction, dropout {m.dropout}",
        "precision": setup.precision,
        "durations": f"train-960-like: mean {pool.mean():.1f} s, 10-90% {np.percentile(pool, 10):.1f}-"
                     f"{np.percentile(pool, 90):.1f} s, max {pool.max():.1f} s",
        "batching": f"budget {setup.batch_seconds:g} padded s, {setup.num_buckets} buckets",
        "steps": f"{warmup} warm-up + {steps} timed per row",
    }


if __name__ == "__main__":
    sys.exit(main())
