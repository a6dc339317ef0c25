"""Checkpoints that a kill cannot break: a training process (this file run as a script, below) is
SIGKILLed while it writes a checkpoint, made slow on purpose; no truncated file is left under a
checkpoint's name, and training continues from the newest whole checkpoint (``resume=auto``, or
the same run folder started again). Also: a truncated or foreign checkpoint that resuming would
pick gives way to the next newest with one warning line naming it, and an explicit ``resume=``
path that is one is a one-line CheckpointError.

    python tests/test_checkpoint_kill.py RUN_DIR TRAIN DEV TEST [--slow NAME_GLOB --slow-from STEP]
                                         [--signal-at STEP] [--resume auto]

trains the tiny model for MAX_STEPS steps (5 per epoch, a checkpoint and last.ckpt at the end of
each), writes ``RUN_DIR/probe/first_step`` (the step it started from), and with ``--slow`` stalls
each checkpoint write whose file name matches after its first block once ``STEP`` steps are done
(the temporary file then exists, part written). ``--signal-at`` sends itself SIGUSR1 at that step:
``asr.training.preemption.Preemption`` writes ``hpc_ckpt_1.ckpt``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import lightning as L
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.model.checkpoint import CheckpointError  # noqa: E402
from asr.training.checkpoints import check_resumable  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

MAX_STEPS = 15  # three epochs of 5 steps: checkpoints at steps 5, 10 and 15
STALL_S = 300.0  # how long a slowed write waits for the kill (the test kills it as soon as it sees the write)
RUN_TIMEOUT_S = 180


# --- the training process -------------------------------------------------------------------------

STEPS_DONE = [0]  # training steps done so far in this process


class Probe(L.Callback):
    """Writes ``<out>/first_step`` (where this process started); sends SIGUSR1 to its own process at
    the start of step ``signal_at``."""

    def __init__(self, out: str, signal_at: int | None = None) -> None:
        self.out, self.signal_at, self.started = Path(out), signal_at, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.started:
            self.started = True
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "first_step").write_text(str(trainer.global_step))
        if trainer.global_step == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        STEPS_DONE[0] = trainer.global_step


class StalledFile:
    """A file that takes the first block written, flushes it, writes ``marker`` and waits to be killed."""

    def __init__(self, f, marker: Path) -> None:
        self.f, self.marker, self.blocks = f, marker, 0

    def write(self, data) -> int:
        n = self.f.write(data)
        self.blocks += 1
        if self.blocks == 1:
            self.f.flush()
            self.marker.write_text("stalled")
            time.sleep(STALL_S)
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


def _slow_checkpoint_writes(name_glob: str, from_step: int, marker: Path) -> None:
    """Make ``asr.training.checkpoints.save_checkpoint_file`` stall the writes of matching names from ``from_step`` on."""
    import asr.training.checkpoints

    real_atomic_write = asr.training.checkpoints.atomic_write

    @contextlib.contextmanager
    def atomic_write(path, *args, **kwargs):
        with real_atomic_write(path, *args, **kwargs) as f:
            stall = fnmatch(Path(path).name, name_glob) and STEPS_DONE[0] >= from_step
            yield StalledFile(f, marker) if stall else f

    asr.training.checkpoints.atomic_write = atomic_write


def _main() -> None:
    import argparse

    from omegaconf import open_dict

    from tests.conftest import TINY_MODEL, compose_config, manifest_overrides, train_as_the_script_does

    parser = argparse.ArgumentParser()
    for name in ("run_dir", "train", "dev", "test"):
        parser.add_argument(name)
    parser.add_argument("--slow", help="stall writes of checkpoints whose file name matches this glob")
    parser.add_argument("--slow-from", type=int, default=0, help="... once this many steps are done")
    parser.add_argument("--signal-at", type=int, help="send SIGUSR1 to itself at the start of this step")
    parser.add_argument("--resume")
    args = parser.parse_args()
    probe = Path(args.run_dir) / "probe"
    if args.slow:
        probe.mkdir(parents=True, exist_ok=True)
        _slow_checkpoint_writes(args.slow, args.slow_from, probe / "stalled")
    torch.set_num_threads(1)
    manifests = {"train": args.train, "dev": args.dev, "test": args.test}
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL, "logger=none", "test=false",
                         f"trainer.max_steps={MAX_STEPS}", "trainer.enable_progress_bar=false",
                         "trainer.enable_model_summary=false", "data.batch_seconds=4.5", "data.num_buckets=2",
                         f"resume={args.resume or 'null'}")
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "__main__.Probe", "out": str(probe), "signal_at": args.signal_at}
    train_as_the_script_does(cfg, args.run_dir)


# --- the tests ------------------------------------------------------------------------------------


def _start(run_dir, manifests, *extra):
    cmd = [sys.executable, __file__, str(run_dir), *(str(manifests[s]) for s in ("train", "dev", "test")), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_during_write(proc, run_dir: Path, folder: Path, name: str) -> Path:
    """SIGKILL ``proc`` while it writes ``name`` in ``folder`` (stalled after its first block); return
    the temporary file the kill leaves."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (run_dir / "probe" / "stalled").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never started writing {name}: {proc.communicate()[1][-3000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    partial = list(folder.glob(f".{name}.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    return partial[0]


def _finish(proc) -> str:
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]
    return err


def _step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def _assert_every_named_checkpoint_is_whole(run_dir: Path) -> None:
    for path in run_dir.rglob("*.ckpt"):
        check_resumable(path)  # raises on a truncated file


def test_kill_while_last_ckpt_is_written_then_resume_auto_continues_from_the_newest_whole_one(chirp_manifests,
                                                                                          tmp_path):
    runs = tmp_path / "runs"
    killed = _start(runs / "a", chirp_manifests, "--slow", "last.ckpt", "--slow-from", "10")
    # at step 10 the top-k file is written, then last.ckpt: killed during that one
    partial = _kill_during_write(killed, runs / "a", runs / "a" / "checkpoints", "last.ckpt")
    with pytest.raises(CheckpointError, match="truncated"):
        check_resumable(partial)  # the kill did cut a write short ...
    _assert_every_named_checkpoint_is_whole(runs / "a")  # ... and no name shows it
    assert _step(runs / "a" / "checkpoints" / "last.ckpt") == 5  # the one before, whole
    [newest] = (runs / "a" / "checkpoints").glob("epoch001-step000010-*.ckpt")  # top-k, written just before
    assert _step(newest) == 10

    err = _finish(_start(runs / "b", chirp_manifests, "--resume", "auto"))  # continues run a, in its folder
    assert (runs / "b" / "probe" / "first_step").read_text() == "10"  # (the probe writes where it was told)
    assert not list((runs / "b").rglob("*.ckpt")) and not (runs / "b" / "checkpoints").exists()
    assert "skipped" not in err
    assert _step(runs / "a" / "checkpoints" / "last.ckpt") == MAX_STEPS


def test_kill_while_the_preemption_checkpoint_is_written_then_the_run_folder_continues(chirp_manifests, tmp_path):
    run_dir = tmp_path / "4242"
    killed = _start(run_dir, chirp_manifests, "--slow", "hpc_ckpt_*.ckpt", "--signal-at", "7")
    partial = _kill_during_write(killed, run_dir, run_dir, "hpc_ckpt_1.ckpt")
    assert not (run_dir / "hpc_ckpt_1.ckpt").exists()
    _assert_every_named_checkpoint_is_whole(run_dir)

    _finish(_start(run_dir, chirp_manifests))  # the requeued job: same folder, continues from last.ckpt
    assert (run_dir / "probe" / "first_step").read_text() == "5"
    assert not partial.exists()  # the first checkpoint write of the new process removed the leftover


def _checkpoint(path: Path, step: int, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(256)}, "optimizer_states": [], "loops": {}}, path)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def _truncate(path: Path) -> None:
    stat = path.stat()
    path.write_bytes(path.read_bytes()[: stat.st_size // 2])
    os.utime(path, (stat.st_atime, stat.st_mtime))


def test_a_truncated_newest_checkpoint_gives_way_to_the_next_newest_with_one_warning(tmp_path, caplog):
    from asr.training.runs import resume_checkpoint, run_folder

    older = _checkpoint(tmp_path / "a" / "checkpoints" / "epoch000-step000005-wer0.9000.ckpt", 5, 300)
    last = _checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt", 10, 200)
    newest = _checkpoint(tmp_path / "b" / "hpc_ckpt_1.ckpt", 12, 100)
    assert run_folder(tmp_path.parent, tmp_path.name, "auto", env={}) == tmp_path / "b"
    assert resume_checkpoint("auto", tmp_path / "b") == str(newest)
    _truncate(newest)
    with caplog.at_level(logging.WARNING, logger="asr.training.runs"):  # b has nothing whole left: a continues
        assert run_folder(tmp_path.parent, tmp_path.name, "auto", env={}) == tmp_path / "a"
    assert caplog.messages and all(m.startswith(f"{newest}: not a readable PyTorch checkpoint (truncated")
                                   and "\n" not in m for m in caplog.messages)

    caplog.clear()
    _truncate(last)  # the run folder continues itself: its last.ckpt is cut short, its top-k file is whole
    with caplog.at_level(logging.WARNING, logger="asr.training.runs"):
        assert resume_checkpoint(None, tmp_path / "a") == str(older)
    assert [m.split(":")[0] for m in caplog.messages] == [str(last)]


def test_links_are_not_candidates_and_foreign_files_are_skipped(tmp_path, caplog):
    from asr.training.runs import resume_checkpoint

    top = _checkpoint(tmp_path / "a" / "checkpoints" / "epoch000-step000005-wer0.9000.ckpt", 5, 300)
    (tmp_path / "a" / "checkpoints" / "best.ckpt").symlink_to(top.name)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "a" / "checkpoints" / "last.ckpt")  # not Lightning's
    with caplog.at_level(logging.WARNING, logger="asr.training.runs"):
        assert resume_checkpoint(None, tmp_path / "a") == str(top)
    assert len(caplog.messages) == 1 and "last.ckpt: not a training checkpoint" in caplog.messages[0]


def test_an_explicit_resume_path_that_is_truncated_or_foreign_is_one_line(tmp_path):
    from asr.training.runs import resume_checkpoint
    from asr.training.train import USER_ERRORS

    path = _checkpoint(tmp_path / "cut.ckpt", 5, 0)
    assert resume_checkpoint(str(path), tmp_path / "run") == str(path)
    _truncate(path)
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: not a readable PyTorch checkpoint \(truncated") as err:
        resume_checkpoint(str(path), tmp_path / "run")
    assert isinstance(err.value, USER_ERRORS) and "\n" not in str(err.value)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt: not a readable PyTorch checkpoint"):
        resume_checkpoint(str(tmp_path / "notes.ckpt"), tmp_path / "run")


def test_the_trainer_writes_through_a_temporary_file_and_cleans_up_killed_writes(tmp_path):
    from asr.training.checkpoints import AtomicCheckpointIO

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    leftover = folder / ".last.ckpt.abc123.tmp"  # what a kill during a write leaves
    leftover.write_bytes(b"PK\x03\x04 part of a zip")
    unrelated = folder / ".notes.txt.abc123.tmp"
    unrelated.write_text("someone else's")
    io = AtomicCheckpointIO(tmp_path / "run")
    io.save_checkpoint({"global_step": 3, "state_dict": {}, "optimizer_states": [], "loops": {}},
                       tmp_path / "run" / "hpc_ckpt_1.ckpt")
    assert not leftover.exists() and unrelated.exists()
    assert _step(tmp_path / "run" / "hpc_ckpt_1.ckpt") == 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "hpc_ckpt_1.ckpt"]
    assert (tmp_path / "run" / "hpc_ckpt_1.ckpt").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_under_ddp_the_strategy_writes_through_it(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    from asr.training.checkpoints import AtomicCheckpointIO

    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(), plugins=[AtomicCheckpointIO(tmp_path)],
                        logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # it saves on the global-zero rank only


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    _main()
