"""Corpora -> shards: manifests (asr, NeMo, Lhotse CutSets) and LibriSpeech folders -> tar shards + index.

The utterances of all inputs are shuffled together with ``seed`` and cut into shards of about
``shard_hours`` of audio each (:func:`plan_shards`); every shard is written by one of ``workers``
processes (:func:`write_shard`): FLAC at the source's rate or ``sample_rate``, its members laid
out as :mod:`asr.data.shards.layout` says. A shard is written under a hidden name and renamed when
whole, then its own index (``<shard>.json``) beside it; a shard whose own index is there is not
written again, so an interrupted conversion resumes where it stopped and a finished one does
nothing. An input that cannot be read is printed, listed in ``shards.skipped.tsv`` and left out.
The index (``index.json``, ``index.npz``) and NeMo's manifest are assembled from the shards' own
indexes at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import tarfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from asr.audio import AudioError, audio_info, load_audio
from asr.data.manifest import ManifestError, Problem, Utterance, from_librispeech, read_manifest
from asr.data.shards.layout import (
    AUDIO_MEMBER,
    META_MEMBER,
    NEMO_MANIFEST,
    SIDECAR,
    SKIPPED,
    ShardIndex,
    ShardInfo,
    add_member,
    member_key,
    shard_name,
)
from asr.files import atomic_write

log = logging.getLogger(__name__)

MAX_KEY = 90  # tar's USTAR names hold 100 characters: the key and ".flac" fit
FLAC_BYTES_PER_SAMPLE = 1.1  # 16-bit speech in FLAC, for --dry-run's size estimate (about 55 % of PCM)


@dataclass
class ShardPlan:
    number: int
    utterances: list[Utterance]
    keys: list[str]

    @property
    def name(self) -> str:
        return shard_name(self.number)

    @property
    def seconds(self) -> float:
        return sum(u.duration for u in self.utterances)

    def fingerprint(self, sample_rate: int | None) -> str:
        """What the shard holds, so that a resumed conversion can tell its own shards from others'."""
        text = json.dumps([[u.id, u.audio, u.offset, u.duration] for u in self.utterances] + [sample_rate])
        return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class Summary:
    shards: int = 0
    written: int = 0  # shards written by this run (the others were there already)
    seconds: float = 0.0
    bytes: int = 0
    skipped: list[Problem] = field(default_factory=list)


def read_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Utterance], list[Problem]]:
    """Utterances of manifests (asr, NeMo, Lhotse; gzipped or not) and LibriSpeech-layout folders, in order."""
    utterances, problems = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found, bad = from_librispeech(item, progress=False)
            utterances += found
            problems += bad
        elif item.is_file():
            utterances += read_manifest(item)
        else:
            raise ManifestError(f"{item}: no such manifest or folder")
    return utterances, problems


def plan_shards(utterances: Sequence[Utterance], shard_hours: float, seed: int) -> list[ShardPlan]:
    """The utterances shuffled with ``seed`` and cut into consecutive shards of about ``shard_hours``."""
    if shard_hours <= 0:
        raise ValueError(f"--shard-hours {shard_hours}: must be positive")
    order = list(utterances)
    random.Random(seed).shuffle(order)
    total = sum(u.duration for u in order)
    count = max(1, round(total / (shard_hours * 3600)))
    per_shard = total / count
    plans, current, seconds, used = [], [], 0.0, set()
    for utt in order:
        current.append(utt)
        seconds += utt.duration
        if seconds >= per_shard * (len(plans) + 1) and len(plans) < count - 1:
            plans.append(current)
            current = []
    plans.append(current)
    out = []
    for number, shard in enumerate(p for p in plans if p):
        keys = []
        for utt in shard:
            key = member_key(utt.id)[:MAX_KEY]
            while key in used:
                key = f"{key[:MAX_KEY - 9]}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
            used.add(key)
            keys.append(key)
        out.append(ShardPlan(number, shard, keys))
    return out


def write_shard(plan: ShardPlan, out: str, sample_rate: int | None) -> dict:
    """Write one shard (unless its own index says it is there already); return its own index."""
    folder = Path(out)
    sidecar = folder / (plan.name + SIDECAR)
    fingerprint = plan.fingerprint(sample_rate)
    if sidecar.is_file() and (folder / plan.name).is_file():
        done = json.loads(sidecar.read_text(encoding="utf-8"))
        if done.get("fingerprint") != fingerprint:
            raise ValueError(f"{folder / plan.name} holds other utterances than this conversion puts there (other "
                             "inputs, --shard-hours, --seed or --sample-rate): write to an empty folder")
        return {**done, "written": False}
    tmp = folder / f".{plan.name}.partial-{os.getpid()}"
    members, skipped = [], []
    with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for utt, key in zip(plan.utterances, plan.keys):
            try:
                rate = sample_rate or audio_info(utt.source).sample_rate
                wave = load_audio(utt.source, rate)
            except AudioError as err:
                skipped.append([err.path, err.reason])
                continue
            flac = io.BytesIO()
            sf.write(flac, wave.numpy(), rate, format="FLAC", subtype="PCM_16")
            duration = wave.numel() / rate
            meta = {"id": utt.id, "text": utt.text, "duration": round(duration, 4), "sample_rate": rate,
                    **({"speaker": utt.speaker} if utt.speaker is not None else {})}
            start = tar.offset
            add_member(tar, f"{key}.{META_MEMBER}", json.dumps(meta, ensure_ascii=False).encode())
            add_member(tar, f"{key}.{AUDIO_MEMBER}", flac.getvalue())
            members.append({"key": key, "id": utt.id, "text": utt.text, "start": start, "size": tar.offset - start,
                            "duration": duration, "sample_rate": rate})
        tar.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, folder / plan.name)
    done = {"name": plan.name, "fingerprint": fingerprint, "members": members, "skipped": skipped,
            "bytes": (folder / plan.name).stat().st_size}
    with atomic_write(sidecar) as f:
        json.dump(done, f, ensure_ascii=False)
    return {**done, "written": True}


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def convert(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, shard_hours: float = 1.0,
            sample_rate: int | None = None, seed: int = 0, workers: int = 2,
            on_shard: Callable[[dict], None] | None = None) -> Summary:
    """Write the shards and the index of ``inputs`` into ``out`` (see the module docstring)."""
    utterances, problems = read_inputs(inputs)
    if not utterances:
        raise ManifestError(f"{', '.join(map(str, inputs))}: no utterance to shard")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.partial-*"):  # shards a killed conversion was writing
        stale.unlink(missing_ok=True)
    plans = plan_shards(utterances, shard_hours, seed)
    done: dict[int, dict] = {}
    if workers > 0:
        context = multiprocessing.get_context("spawn")  # fresh workers: no inherited threads or state
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread) as pool:
            futures = {pool.submit(write_shard, plan, str(folder), sample_rate): plan.number for plan in plans}
            try:
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    if on_shard:
                        on_shard(done[futures[future]])
            except BrokenProcessPool:
                raise ManifestError("a shard-writing process died; from a Python script, call convert() under "
                                    "`if __name__ == \"__main__\":` (workers are started with spawn), or pass "
                                    "workers=0") from None
    else:
        for plan in plans:
            done[plan.number] = write_shard(plan, str(folder), sample_rate)
            if on_shard:
                on_shard(done[plan.number])
    return _assemble(folder, plans, done, problems)


def _assemble(folder: Path, plans: list[ShardPlan], done: dict[int, dict], problems: list[Problem]) -> Summary:
    """The index, NeMo's manifest and the skipped list from the shards' own indexes."""
    shards, rows, nemo = [], [], []
    summary = Summary(shards=len(plans), skipped=list(problems))
    for plan in plans:
        own = done[plan.number]
        summary.written += bool(own.get("written"))
        summary.skipped += [Problem(path, reason) for path, reason in own["skipped"]]
        members = own["members"]
        seconds = sum(m["duration"] for m in members)
        shards.append(ShardInfo(plan.name, len(members), seconds, own["bytes"]))
        rows += [(len(shards) - 1, m["start"], m["size"], m["duration"]) for m in members]
        nemo += [{"audio_filepath": f"{m['key']}.{AUDIO_MEMBER}", "duration": m["duration"], "text": m["text"],
                  "shard_id": plan.number, "id": m["id"]} for m in members]
        summary.seconds += seconds
        summary.bytes += own["bytes"]
    columns = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    rates = {m["sample_rate"] for own in done.values() for m in own["members"]}
    index = ShardIndex(shards, columns[:, 0].astype(np.uint32), columns[:, 1].astype(np.uint64),
                       columns[:, 2].astype(np.uint32), columns[:, 3].astype(np.float32),
                       rates.pop() if len(rates) == 1 else None)
    index.save(folder)
    with atomic_write(folder / NEMO_MANIFEST) as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in nemo)
    with atomic_write(folder / SKIPPED) as f:
        f.write("path\treason\n")
        f.writelines(f"{p.path}\t{p.reason}\n" for p in summary.skipped)
    return summary


def dry_run(inputs: Sequence[str | os.PathLike], shard_hours: float, seed: int,
            sample_rate: int | None = None) -> tuple[list[ShardPlan], float]:
    """The shards a conversion would write, and their estimated size in bytes (no audio is read)."""
    utterances, _ = read_inputs(inputs)
    plans = plan_shards(utterances, shard_hours, seed)
    rate = sample_rate or 16_000
    return plans, sum(p.seconds for p in plans) * rate * FLAC_BYTES_PER_SAMPLE

