"""The optimizer-step schedule in units that survive the world size: a global batch and audio hours -> steps.

A recipe states its global batch (``schedule.global_batch_seconds``: padded audio seconds per
optimizer step, over all devices) and its warm-up and validation interval in audio hours
(``schedule.warmup_hours``, ``schedule.val_every_hours``). For ``devices x nodes`` processes,
:func:`plan` derives what Lightning and the sampler need:

- gradient accumulation ``a = ceil(global / (world x data.batch_seconds))``, so no device holds more
  than ``data.batch_seconds`` of audio (its memory limit), and the per-device batch
  ``global / (world x a)``: one optimizer step sees the same audio on 1 GPU (8 accumulated
  batches) as on 8 (one each) or 32 (smaller batches);
- warm-up steps ``warmup_hours x 3600 / global`` and a validation every
  ``val_every_hours x 3600 / global`` steps (Lightning counts batches: x ``a``).

So the learning rate, the warm-up's share of training and the validations per epoch do not depend
on the number of GPUs, and nothing has to be rescaled by hand. Left unset (``null``), each falls
back to the per-device setting it replaces (``data.batch_seconds``, ``optim.warmup_steps``,
``trainer.val_check_interval``), whose meaning then changes with the world size, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0


@dataclass
class ScheduleConfig:
    """What a recipe states about its schedule, independent of the number of devices."""

    global_batch_seconds: float | None = None  # padded audio s per optimizer step, all devices; None: per device
    warmup_hours: float | None = None  # audio hours of linear warm-up; None: optim.warmup_steps
    val_every_hours: float | None = None  # audio hours between validations; None: trainer.val_check_interval

    def __post_init__(self) -> None:
        for name in ("global_batch_seconds", "val_every_hours"):
            if (value := getattr(self, name)) is not None and not value > 0:
                raise ValueError(f"{name}={value}: must be positive (or null)")
        if self.warmup_hours is not None and self.warmup_hours < 0:
            raise ValueError(f"warmup_hours={self.warmup_hours}: must be >= 0 (or null)")


@dataclass(frozen=True)
class Plan:
    """The schedule for one world size, in the units Lightning and the sampler take."""

    world_size: int
    device_batch_seconds: float  # the sampler's padded-audio budget per batch, per device
    accumulate: int  # batches per optimizer step on each device
    warmup_steps: int  # optimizer steps
    val_every_steps: int | None  # optimizer steps between validations; None: the trainer's own setting

    @property
    def global_batch_seconds(self) -> float:
        return self.device_batch_seconds * self.world_size * self.accumulate

    @property
    def val_check_interval(self) -> int | None:
        """Lightning's ``val_check_interval``, which counts batches, not optimizer steps."""
        return None if self.val_every_steps is None else self.val_every_steps * self.accumulate


def plan(schedule: ScheduleConfig, world_size: int, batch_seconds: float, warmup_steps: int,
         accumulate: int = 1) -> Plan:
    """The :class:`Plan` for ``world_size`` processes whose batches hold at most ``batch_seconds``
    (``data.batch_seconds``); ``warmup_steps`` and ``accumulate`` are used when the schedule leaves
    the global batch or the warm-up unset."""
    if world_size < 1:
        raise ValueError(f"world size {world_size}: must be at least 1")
    if schedule.global_batch_seconds is None:
        device, accumulate = batch_seconds, max(1, accumulate)
    else:
        accumulate = max(1, math.ceil(schedule.global_batch_seconds / (world_size * batch_seconds) - 1e-9))
        device = schedule.global_batch_seconds / (world_size * accumulate)
    global_batch = device * world_size * accumulate
    warmup = warmup_steps if schedule.warmup_hours is None else round(schedule.warmup_hours * SECONDS_PER_HOUR / global_batch)
    val_every = (None if schedule.val_every_hours is None
                 else max(1, round(schedule.val_every_hours * SECONDS_PER_HOUR / global_batch)))
    return Plan(world_size, device, accumulate, warmup, val_every)


def describe(p: Plan, steps_per_epoch: int, total_steps: int) -> str:
    """One log line: the schedule as this world size runs it."""
    validations = (f"every {p.val_every_steps} steps ({steps_per_epoch / p.val_every_steps:.2f} per epoch)"
                   if p.val_every_steps else "as trainer.val_check_interval says")
    share = f" ({100 * p.warmup_steps / total_steps:.1f} % of training)" if total_steps > 0 else ""
    return (f"schedule for {p.world_size} process(es): global batch {p.global_batch_seconds:.0f} s of audio per "
            f"step ({p.device_batch_seconds:.0f} s per device x {p.accumulate} accumulated x {p.world_size}); "
            f"{steps_per_epoch} steps per epoch, {total_steps} in all; warm-up {p.warmup_steps} steps{share}; "
            f"validation {validations}")
