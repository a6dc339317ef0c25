"""Manifests: the list of utterances a corpus split is made of, as JSON lines.

One JSON object per line::

    {"id": "1089-134686-0000", "audio": "test-clean/1089/134686/1089-134686-0000.flac",
     "duration": 10.435, "text": "he hoped there would be stew for dinner", "speaker": "1089"}

``audio`` (required) is a path, absolute or relative to the manifest's own folder; ``duration``
(required) is in seconds; ``text`` (required) is the raw transcript, normalized later by the
tokenizer; ``id`` defaults to the audio file's stem and ``speaker`` is optional. Extra fields are
ignored. The manifests of other toolkits are read as they are, gzipped or not (``.gz``):

- NeMo: ``audio_filepath``, ``duration``, ``text`` and an optional ``offset`` (seconds into the
  file: the utterance is that span of it);
- Lhotse CutSets (``cuts_*.jsonl.gz``: ``lhotse cut simple``, ``CutSet.to_file``): each cut is the
  span ``start`` + ``duration`` of its recording's file source, its text the supervisions' texts.
  Recordings and supervisions manifests alone are one line saying how to make a CutSet of them.

Builders turn a folder into utterances, reading exact durations from the file headers in parallel
threads; a file that cannot be read is reported as a :class:`Problem` and left out.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from asr.audio import AudioError, Segment, audio_info
from asr.files import atomic_write

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".sph", ".mp3")
FORMATS = "asr (audio, duration, text), NeMo (audio_filepath, duration, text[, offset]) and Lhotse CutSet JSON lines"
GZIP_MAGIC = b"\x1f\x8b"
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
    offset: float | None = None  # seconds into the file where the utterance starts; None: the whole file

    @property
    def source(self) -> str | Segment:
        """What the audio readers take: the file, or the span of it that is this utterance."""
        return self.audio if self.offset is None else Segment(self.audio, self.offset, self.duration)


@dataclass(frozen=True)
class Problem:
    """A file left out of a manifest, and why."""

    path: str
    reason: str


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read and validate a manifest (asr, NeMo or Lhotse JSON lines, gzipped or not). Relative audio
    paths become absolute. Raises ManifestError, one line naming the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    utterances = []
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    utterances.append(_parse_line(line, path, lineno))
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text manifest (binary data); {FORMATS} are read, "
                            "gzipped or not") from None
    except (OSError, EOFError) as err:  # a damaged .gz
        raise ManifestError(f"{path}: unreadable ({err}); {FORMATS} are read, gzipped or not") from None
    return utterances


def _parse_line(line: str, path: Path, lineno: int) -> Utterance:
    where = f"{path}:{lineno}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg}); {FORMATS} are read") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: each line must be a JSON object")
    if "supervisions" in row or "recording" in row:
        return _lhotse_cut(row, path, where)
    if "recording_id" in row or "sources" in row:
        kind = "supervisions" if "recording_id" in row else "recordings"
        raise ManifestError(f"{where}: a Lhotse {kind} manifest; give the CutSet of recordings and supervisions "
                            "(lhotse cut simple -r RECORDINGS -s SUPERVISIONS cuts.jsonl.gz)")
    audio = row.get("audio", row.get("audio_filepath"))
    for field, value, kind in (("audio", audio, str), ("text", row.get("text"), str)):
        if not isinstance(value, kind):
            raise ManifestError(f"{where}: field {field!r} is missing or not a string; {FORMATS} are read")
    duration = _positive(row.get("duration"), where, "duration")
    offset = row.get("offset")
    if offset is not None and (not isinstance(offset, (int, float)) or offset < 0):
        raise ManifestError(f"{where}: field 'offset' must be a number of seconds >= 0, got {offset!r}")
    speaker = row.get("speaker")
    return Utterance(id=str(row.get("id") or Path(audio).stem), audio=_absolute(audio, path), duration=duration,
                     text=row["text"], speaker=None if speaker is None else str(speaker),
                     offset=None if offset is None else float(offset))


def _lhotse_cut(cut: dict, path: Path, where: str) -> Utterance:
    """A Lhotse MonoCut whose recording has one file source -> the utterance that is its span."""
    if cut.get("type", "MonoCut") != "MonoCut":
        raise ManifestError(f"{where}: a Lhotse {cut.get('type')}; only MonoCuts are read (cut.to_mono() or "
                            "lhotse cut simple makes them)")
    recording = cut.get("recording") or {}
    sources = recording.get("sources") or []
    if len(sources) != 1 or sources[0].get("type") != "file" or recording.get("transforms"):
        kinds = ", ".join(sorted({str(s.get("type")) for s in sources})) or "none"
        raise ManifestError(f"{where}: cut {cut.get('id')}: its recording's sources ({kinds}"
                            f"{', with transforms' if recording.get('transforms') else ''}) are not one audio file; "
                            "only file sources without transforms are read")
    texts = [s.get("text") for s in cut.get("supervisions") or [] if s.get("text")]
    if not texts:
        raise ManifestError(f"{where}: cut {cut.get('id')} has no supervision with a text")
    speaker = next((s.get("speaker") for s in cut["supervisions"] if s.get("speaker")), None)
    return Utterance(id=str(cut.get("id")), audio=_absolute(sources[0]["source"], path),
                     duration=_positive(cut.get("duration"), where, "duration"), text=" ".join(texts),
                     speaker=None if speaker is None else str(speaker), offset=float(cut.get("start") or 0.0))


def _positive(value: object, where: str, field: str) -> float:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ManifestError(f"{where}: field {field!r} must be a positive number of seconds, got {value!r}")
    return float(value)


def _absolute(audio: str, manifest: Path) -> str:
    return str((Path(audio) if os.path.isabs(audio) else manifest.parent / audio).resolve())


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
            for optional in ("speaker", "offset"):
                if row[optional] is None:
                    del row[optional]
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
