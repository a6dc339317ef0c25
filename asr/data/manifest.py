"""Manifests: the list of utterances a corpus split is made of, as JSON lines.

One JSON object per line::

    {"id": "1089-134686-0000", "audio": "test-clean/1089/134686/1089-134686-0000.flac",
     "duration": 10.435, "text": "he hoped there would be stew for dinner", "speaker": "1089"}

``audio`` (required) is a path, absolute or relative to the manifest's own folder; ``duration``
(required) is in seconds; ``text`` (required) is the raw transcript, normalized later by the
tokenizer; ``id`` defaults to the audio file's stem and ``speaker`` is optional. NeMo's
``audio_filepath`` is accepted for ``audio``. Extra fields are ignored.

Builders turn a folder into utterances, reading exact durations from the file headers in parallel
threads; a file that cannot be read is reported as a :class:`Problem` and left out.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from asr.audio import AudioError, audio_info
from asr.files import atomic_write

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".sph", ".mp3")
_DURATION_THREADS = 8  # header reads are I/O bound; libsndfile releases the GIL


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript."""

    id: str
    audio: str  # path to the audio file (absolute once read)
    duration: float  # seconds
    text: str  # raw transcript
    speaker: str | None = None


@dataclass(frozen=True)
class Problem:
    """A file left out of a manifest, and why."""

    path: str
    reason: str


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read and validate a JSON-lines manifest. Relative audio paths become absolute."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    utterances = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                utterances.append(_parse_line(line, path, lineno))
    return utterances


def _parse_line(line: str, path: Path, lineno: int) -> Utterance:
    where = f"{path}:{lineno}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: each line must be a JSON object")
    audio = row.get("audio", row.get("audio_filepath"))
    for field, value, kind in (("audio", audio, str), ("text", row.get("text"), str)):
        if not isinstance(value, kind):
            raise ManifestError(f"{where}: field {field!r} is missing or not a string")
    duration = row.get("duration")
    if not isinstance(duration, (int, float)) or duration <= 0:
        raise ManifestError(f"{where}: field 'duration' must be a positive number of seconds, got {duration!r}")
    audio_path = Path(audio) if os.path.isabs(audio) else path.parent / audio
    speaker = row.get("speaker")
    return Utterance(
        id=str(row.get("id") or Path(audio).stem),
        audio=str(audio_path.resolve()),
        duration=float(duration),
        text=row["text"],
        speaker=None if speaker is None else str(speaker),
    )


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance]) -> Path:
    """Write a manifest atomically; audio paths inside the manifest's folder are stored relative to it."""
    path = Path(path)
    root = path.parent.resolve()
    with atomic_write(path) as f:
        for utt in utterances:
            row = asdict(utt)
            audio = Path(utt.audio).resolve()
            if audio.is_relative_to(root):
                row["audio"] = str(audio.relative_to(root))
            if row["speaker"] is None:
                del row["speaker"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def from_librispeech(folder: str | os.PathLike, progress: bool = True) -> tuple[list[Utterance], list[Problem]]:
    """Utterances of a LibriSpeech-layout folder: ``<spk>/<chapter>/<spk>-<chapter>.trans.txt``
    beside ``<id>.flac`` (or another audio extension), searched recursively."""
    folder = _existing_folder(folder)
    entries: list[tuple[str, Path, str, str]] = []  # id, audio, text, speaker
    problems: list[Problem] = []
    for trans in sorted(folder.rglob("*.trans.txt")):
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            audio = _find_audio(trans.parent, utt_id)
            if audio is None:
                problems.append(Problem(f"{trans}:{lineno}", f"no audio file for {utt_id}"))
                continue
            entries.append((utt_id, audio, text, utt_id.split("-")[0]))
    if not entries and not problems:
        raise ManifestError(f"{folder}: no *.trans.txt transcripts found (is it a LibriSpeech-layout folder?)")
    return with_durations(entries, problems, progress)


def from_audio_folder(folder: str | os.PathLike, progress: bool = True) -> tuple[list[Utterance], list[Problem]]:
    """Utterances of a folder of audio files, each with a same-named ``.txt`` transcript beside it
    (``a/b.wav`` + ``a/b.txt``), searched recursively. The speaker is the parent folder's name."""
    folder = _existing_folder(folder)
    entries, problems = [], []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        txt = audio.with_suffix(".txt")
        if not txt.is_file():
            problems.append(Problem(str(audio), f"no transcript {txt.name} beside it"))
            continue
        text = " ".join(txt.read_text(encoding="utf-8").split())
        entries.append((audio.stem, audio, text, audio.parent.name))
    if not entries and not problems:
        raise ManifestError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return with_durations(entries, problems, progress)


def with_durations(
    entries: Sequence[tuple[str, Path, str, str]], problems: list[Problem], progress: bool
) -> tuple[list[Utterance], list[Problem]]:
    """``(id, audio path, text, speaker)`` entries -> utterances with exact durations read from the
    audio headers (in parallel), and the entries whose audio could not be read added to ``problems``."""
    def probe(entry: tuple[str, Path, str, str]) -> Utterance | Problem:
        utt_id, audio, text, speaker = entry
        try:
            return Utterance(utt_id, str(audio.resolve()), audio_info(audio).duration, text, speaker)
        except AudioError as err:
            return Problem(err.path, err.reason)

    with ThreadPoolExecutor(_DURATION_THREADS) as pool:
        results = list(tqdm(pool.map(probe, entries), total=len(entries), desc="reading headers",
                            unit="file", disable=not progress, leave=False))
    utterances = [r for r in results if isinstance(r, Utterance)]
    problems = problems + [r for r in results if isinstance(r, Problem)]
    for p in problems:
        log.warning("skipped %s: %s", p.path, p.reason)
    if problems:
        log.warning("%d file(s) skipped, %d utterances kept", len(problems), len(utterances))
    return utterances, problems


def _find_audio(folder: Path, utt_id: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        candidate = folder / f"{utt_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _existing_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: no such folder")
    return folder
