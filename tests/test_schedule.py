"""The schedule survives the world size: recipe=librispeech on 1, 8 and 32 GPUs (and 4 nodes of 8) has
the same global batch, warm-up share and validations per epoch; and the end of training is kept:
the last step is validated, checkpointed and tested, also when no validation interval lands on it."""

from __future__ import annotations

import math
import random

import pytest
import torch

from asr.data.batching import DurationBatchSampler
from asr.training.schedule import ScheduleConfig, plan
from asr.training.train import train
from tests.conftest import TINY_MODEL, compose_config, manifest_overrides

EPOCHS = 16
TRAIN_960_UTTERANCES = 281_241
SAMPLE = 40_000  # utterances drawn for the sampler (the epoch's steps scale with the count)


def _librispeech_durations(n: int) -> list[float]:
    """Durations shaped like LibriSpeech train-960's: most 12-17 s, a tail down to 1 s."""
    rng = random.Random(0)
    return [min(24.5, max(1.0, rng.gauss(14.5, 2.0) if rng.random() < 0.85 else rng.uniform(1.0, 12.0)))
            for _ in range(n)]


def _schedule(devices: int, nodes: int = 1) -> dict:
    cfg = compose_config("recipe=librispeech", f"trainer.devices={devices}", f"trainer.num_nodes={nodes}")
    world = devices * nodes
    p = plan(ScheduleConfig(**cfg.schedule), world, cfg.data.batch_seconds, cfg.optim.warmup_steps)
    sampler = DurationBatchSampler(_librispeech_durations(SAMPLE), p.device_batch_seconds, cfg.data.num_buckets,
                                   num_replicas=world, rank=0)
    steps_per_epoch = math.ceil(len(sampler) / p.accumulate) * TRAIN_960_UTTERANCES / SAMPLE
    return {"global": p.global_batch_seconds, "device": p.device_batch_seconds, "accumulate": p.accumulate,
            "warmup_share": p.warmup_steps / (EPOCHS * steps_per_epoch),
            "validations_per_epoch": steps_per_epoch / p.val_every_steps, "max_device": cfg.data.batch_seconds}


@pytest.mark.parametrize("devices, nodes", [(8, 1), (32, 1), (8, 4)])
def test_the_librispeech_schedule_is_the_same_on_1_8_and_32_gpus(devices, nodes):
    one, many = _schedule(1), _schedule(devices, nodes)
    assert one["global"] == many["global"] == 6400  # audio seconds per optimizer step
    assert one["accumulate"] == 4 and one["device"] == 1600  # 1 GPU: 4 batches of 1600 s accumulated
    assert many["device"] <= many["max_device"] and many["accumulate"] == 1
    assert many["warmup_share"] == pytest.approx(one["warmup_share"], rel=0.05)  # batches fill unevenly
    assert 0.03 < one["warmup_share"] < 0.08  # ~5 %, not the 44 % of 2000 per-GPU steps on 8 GPUs
    assert many["validations_per_epoch"] == pytest.approx(one["validations_per_epoch"], rel=0.05)
    assert 1.5 < one["validations_per_epoch"] < 2.5


def test_unset_schedules_keep_the_per_device_meaning():
    p = plan(ScheduleConfig(), world_size=4, batch_seconds=60, warmup_steps=200, accumulate=2)
    assert (p.device_batch_seconds, p.accumulate, p.warmup_steps, p.val_check_interval) == (60, 2, 200, None)
    assert p.global_batch_seconds == 480
    more = plan(ScheduleConfig(global_batch_seconds=1000, val_every_hours=1), world_size=3, batch_seconds=200,
                warmup_steps=0)
    assert more.accumulate == 2 and more.device_batch_seconds == pytest.approx(1000 / 6)  # never above 200 s
    assert more.val_every_steps == round(3600 / 1000) and more.val_check_interval == more.val_every_steps * 2


def _run(manifests, run_dir, *extra):
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL, "logger=csv", "trainer.enable_progress_bar=false",
                         "trainer.enable_model_summary=false", "data.batch_seconds=4.5", "data.num_buckets=2", *extra)
    return train(cfg, run_dir)


def test_the_last_step_is_validated_checkpointed_and_tested_whatever_the_interval(chirp_manifests, tmp_path):
    """Validation every 5 steps, training ends at step 7: last.ckpt is step 7's, validated there, and
    the test sets are decoded with the final weights and with the best checkpoint."""
    results = _run(chirp_manifests, tmp_path / "run", "trainer.max_steps=7", "trainer.val_check_interval=5",
                   "trainer.check_val_every_n_epoch=null", "trainer.max_epochs=-1")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 7
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    validated = sorted(int(r.split(",")[header.index("step")]) for r in rows[1:]
                       if r.split(",")[header.index("val/wer")])
    assert validated[-1] >= 6  # the final validation (logged at the step count of its last batch)
    assert {"test/test/wer", "test/test/cer", "test_final/test/wer", "test_final/test/cer"} <= set(results)


def test_the_last_epoch_ends_with_a_validation_when_the_interval_counts_steps(chirp_manifests, tmp_path):
    results = _run(chirp_manifests, tmp_path / "run", "trainer.max_epochs=2", "trainer.val_check_interval=4",
                   "trainer.check_val_every_n_epoch=null", "test=false")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] % 4 != 0  # an epoch of 5 batches: the end is not on the grid
    assert "val/wer_best" in results


def test_a_global_batch_accumulates_device_batches_and_validates_in_audio_hours(chirp_manifests, tmp_path):
    """9 s per step from 4.5 s batches on one process: 2 batches accumulated per optimizer step, a
    validation every 0.005 h = 18 s = 2 steps, a warm-up of 0.0025 h = 1 step."""
    _run(chirp_manifests, tmp_path / "run", "schedule.global_batch_seconds=9", "schedule.val_every_hours=0.005",
         "schedule.warmup_hours=0.0025", "trainer.max_steps=4", "trainer.max_epochs=-1", "test=false",
         "callbacks.transcripts.rows=1")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4
    # epochs of 5 batches: steps of 2 + 2 + 1 (an epoch's end steps what it has), then 2
    assert last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] == 7
    transcripts = sorted(p.name for p in (tmp_path / "run" / "transcripts").iterdir())
    assert transcripts == ["step0000002.tsv", "step0000004.tsv"]  # validated every 2 optimizer steps


def test_the_librispeech_recipe_trains_as_written(chirp_manifests, tmp_path):
    """recipe=librispeech's own trainer, schedule and clipping settings build a Trainer and train
    (its audio-hour schedule scaled down to the chirps, the model shrunk)."""
    _run(chirp_manifests, tmp_path / "run", "recipe=librispeech", "trainer.accelerator=cpu", "trainer.precision=32-true",
         "schedule.global_batch_seconds=9", "schedule.val_every_hours=0.005", "schedule.warmup_hours=0.0025",
         "trainer.max_steps=2", "test=false")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
