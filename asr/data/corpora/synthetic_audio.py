"""The synthetic corpus's audio: a planned utterance (every random choice made) -> a 16-bit FLAC file.

In: :class:`RenderJob` objects (text, eSpeak voice, rate, pitch, level, noise, all drawn by
:mod:`.synthetic`'s plan) and a corpus folder. Out: one FLAC file per job, trimmed to a margin of
silence, resampled, levelled and with white noise added; :func:`render_all` runs the jobs in
``num_workers`` spawned processes (one torch thread each, so every worker computes the same bytes)
and returns their durations in seconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from asr.data.corpora import espeak
from asr.data.corpora.base import CorpusError

SILENCE_DB = 40.0  # samples this far below the peak count as silence when trimming
INT16_MAX = 32767  # full scale of a 16-bit sample
POOL_CHUNKSIZE = 8  # utterances handed to a worker at a time


@dataclass(frozen=True)
class RenderJob:
    """One utterance to render: every random choice already made."""

    relpath: str  # output file, relative to the corpus root
    text: str  # what eSpeak reads (the transcript with final punctuation)
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    peak: float
    snr_db: float
    margin_s: float
    noise_seed: int
    sample_rate: int


def _trim(samples: np.ndarray, margin: int) -> np.ndarray:
    """Cut leading and trailing silence, then pad ``margin`` zero samples on each side."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    loud = np.flatnonzero(np.abs(samples) > peak * 10 ** (-SILENCE_DB / 20)) if peak > 0 else []
    if len(loud) == 0:
        raise RuntimeError("eSpeak produced silence")
    pad = np.zeros(margin, dtype=np.float32)
    return np.concatenate([pad, samples[loud[0] : loud[-1] + 1], pad])


def _resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    if orig_rate == new_rate:
        return samples
    return AF.resample(torch.from_numpy(samples), orig_rate, new_rate).numpy()


def _level_and_noise(samples: np.ndarray, peak: float, snr_db: float, seed: int) -> np.ndarray:
    """Scale to ``peak``, add white noise ``snr_db`` below the signal's RMS, clip to [-1, 1]."""
    audio = samples.astype(np.float64) * (peak / np.abs(samples).max())
    noise_rms = np.sqrt(np.mean(audio**2)) / 10 ** (snr_db / 20)
    audio += np.random.default_rng(seed).standard_normal(audio.size) * noise_rms
    return np.clip(audio, -1.0, 1.0)


def render(job: RenderJob, root: str) -> float:
    """Synthesize, trim, resample, level, add noise and write one FLAC file; returns its seconds."""
    import soundfile as sf

    samples, rate = espeak.synthesize(job.text, job.voice, job.rate, job.pitch, job.pitch_range)
    samples = _trim(samples, round(job.margin_s * rate))
    samples = _resample(samples, rate, job.sample_rate)
    audio = _level_and_noise(samples, job.peak, job.snr_db, job.noise_seed)
    pcm = np.round(audio * INT16_MAX).astype(np.int16)
    path = Path(root) / job.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, job.sample_rate, format="FLAC", subtype="PCM_16")
    return pcm.size / job.sample_rate


def _render_batch(batch: Sequence[tuple[int, RenderJob]], root: str) -> list[tuple[int, float]]:
    return [(index, render(job, root)) for index, job in batch]


def _init_worker() -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    torch.set_num_threads(1)  # same arithmetic in every worker, and no oversubscription


@contextlib.contextmanager
def _single_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def render_all(jobs: Sequence[RenderJob], root: Path, num_workers: int, progress: bool) -> list[float]:
    """Render every job (in ``num_workers`` processes, or in this one if 0); their durations."""
    from tqdm import tqdm

    durations = [0.0] * len(jobs)
    indexed = list(enumerate(jobs))
    batches = [indexed[i : i + POOL_CHUNKSIZE] for i in range(0, len(indexed), POOL_CHUNKSIZE)]
    with tqdm(total=len(jobs), unit="utt", desc="synthesizing corpus", disable=not progress) as bar:
        if num_workers == 0:
            with _single_torch_thread():
                for batch in batches:
                    for index, durations[index] in _render_batch(batch, str(root)):
                        bar.update()
            return durations
        # A pool whose worker dies raises BrokenProcessPool here instead of hanging.
        context = multiprocessing.get_context("spawn")  # fresh workers: no inherited threads or state
        pool = ProcessPoolExecutor(num_workers, mp_context=context, initializer=_init_worker)
        try:
            futures = [pool.submit(_render_batch, batch, str(root)) for batch in batches]
            for future in as_completed(futures):
                for index, durations[index] in future.result():
                    bar.update()
        except BrokenProcessPool:
            # Most often: called at the top level of a script, which each spawned worker runs again.
            raise CorpusError("a synthesis worker process died; when generating from a Python script, call it under "
                              "`if __name__ == \"__main__\":` (workers are started with spawn), or set "
                              "data.corpus.num_workers=0") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return durations
