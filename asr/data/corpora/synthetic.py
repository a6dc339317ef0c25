"""The built-in synthetic English corpus: eSpeak NG voices reading grammar sentences.

In: an output folder, a seed, split sizes and audio settings. Out, in LibriSpeech's layout::

    root/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16-bit mono FLAC
    root/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt        "<utt id> UPPER CASE TEXT"
    root/<split>/speakers.tsv                                            who speaks in the split
    root/.complete.json                                                  the parameters; written last

A speaker is an eSpeak language (accent), a voice variant, a base pitch and a base rate. The variant
pools of train, dev and test are disjoint, so no dev or test voice is ever heard in training, and
every language appears in every split (given at least as many utterances as languages).

Every random choice (sentences, speakers, per-utterance pitch, rate, gain, noise level and noise seed)
is drawn up front from ``random.Random(seed)`` (here), and eSpeak itself is made deterministic by
:mod:`.espeak`; the audio is rendered by :mod:`.synthetic_audio`, so the same parameters give byte-identical files whatever ``num_workers``.
The corpus is built in a hidden sibling folder and renamed into place when complete: an interrupted
run never leaves a corpus that looks finished, and a second call with the same parameters returns
at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from asr.data.corpora import espeak, sentences
from asr.data.corpora.base import CorpusError
from asr.data.corpora.synthetic_audio import RenderJob, render_all
from asr.data.manifest import from_librispeech, write_manifest

SPLITS = ("train", "dev", "test")
# Evaluation splits are drawn first, so they stay the same whatever the size of train.
PLAN_ORDER = ("test", "dev", "train")
DEFAULT_SIZES: Mapping[str, int] = MappingProxyType({"train": 6000, "dev": 200, "test": 300})  # as asr/conf/data/synthetic.yaml
DEFAULT_SAMPLE_RATE = 16_000  # Hz
DEFAULT_NOISE_SNR_DB = (25.0, 45.0)  # range of the white-noise signal-to-noise ratio, dB
FORMAT_VERSION = 1  # bump when the same parameters would give different files
MARKER = ".complete.json"  # written last: its presence means the corpus is complete

# Voice variants per split (disjoint; near-identical variant families stay in one split).
TEST_VARIANTS = ("Annie", "f2", "f5", "m4", "m7", "m8", "Nguyen", "Reed", "travis", "quincy")
DEV_VARIANTS = ("Andrea", "f3", "shelby", "m2", "Mike", "mike2", "boris", "ed", "victor")
TRAIN_VARIANTS = tuple(v for v in espeak.SPEECH_VARIANTS if v not in TEST_VARIANTS + DEV_VARIANTS)
VARIANT_POOLS = MappingProxyType({"train": TRAIN_VARIANTS, "dev": DEV_VARIANTS, "test": TEST_VARIANTS})
DEFAULT_SPEAKERS: Mapping[str, int] = MappingProxyType({"train": 240, "dev": 10, "test": 10})  # at most one per utterance
FIRST_SPEAKER_ID = 100  # speaker ids count up from here across the splits, as in LibriSpeech
FIRST_CHAPTER_ID = 1000  # likewise for chapter ids
MAX_UTTERANCES_PER_CHAPTER = 40

# Speaker and utterance parameters.
BASE_RATE_RANGE = (130, 200)  # a speaker's speaking rate, words per minute
BASE_PITCH_RANGE = (25, 75)  # a speaker's pitch on eSpeak's 0-100 scale (50 = the variant's own)
RATE_JITTER = 0.08  # per utterance, the rate varies by up to this fraction of the speaker's
PITCH_JITTER = 6  # per utterance, the pitch varies by up to this many steps
PITCH_RANGE_RANGE = (35, 65)  # per utterance intonation range on eSpeak's 0-100 scale
PEAK_RANGE = (0.3, 0.9)  # per utterance peak level after the random gain, fraction of full scale
MARGIN_RANGE_S = (0.1, 0.2)  # silence kept before and after the speech, seconds
DEDUPLICATION_TRIES = 50  # draws per sentence to avoid repeating one already in the corpus
PARTIAL_TAG = ".partial-"  # hidden build folder: ".<root name>.partial-<pid>-<random>"


@dataclass(frozen=True)
class Speaker:
    id: int
    language: str
    variant: str
    pitch: int  # base pitch, eSpeak's 0-100 scale
    rate: int  # base rate, words per minute

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


@dataclass(frozen=True)
class _Utterance:
    split: str
    speaker: Speaker
    chapter: int
    index: int
    transcript: str  # lower case, as drawn
    job: RenderJob

    @property
    def utterance_id(self) -> str:
        return f"{self.speaker.id}-{self.chapter}-{self.index:04d}"


# --- planning: every random choice, in the parent, in a fixed order ---------------------------------
def _speakers(rng: random.Random, split: str, count: int, first_id: int) -> list[Speaker]:
    """``count`` speakers cycling through the languages and the split's variants in a random order."""
    languages = list(espeak.ENGLISH_LANGUAGES)
    variants = list(VARIANT_POOLS[split])
    rng.shuffle(languages)
    rng.shuffle(variants)
    return [
        Speaker(first_id + k, languages[k % len(languages)], variants[k % len(variants)],
                rng.randint(*BASE_PITCH_RANGE), rng.randint(*BASE_RATE_RANGE))
        for k in range(count)
    ]  # fmt: skip


def _texts(rng: random.Random, n: int, words: Sequence[str] | None, seen: set[str]) -> list[str]:
    """``n`` sentences, none repeating one in ``seen`` where the grammar allows (``seen`` grows)."""
    if words is not None:
        return sentences.sentences(rng, n, words)
    texts = []
    for _ in range(n):
        for _ in range(DEDUPLICATION_TRIES):
            text = sentences.sentence(rng)
            if text not in seen:
                break
        seen.add(text)
        texts.append(text)
    return texts


def _job(rng: random.Random, relpath: str, text: str, speaker: Speaker, params: Mapping[str, Any]) -> RenderJob:
    rate = round(speaker.rate * (1 + rng.uniform(-RATE_JITTER, RATE_JITTER)))
    pitch = speaker.pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER)
    spoken = text + ("?" if sentences.is_question(text) else ".")
    return RenderJob(relpath, spoken, speaker.voice, rate, pitch, rng.randint(*PITCH_RANGE_RANGE),
                rng.uniform(*PEAK_RANGE), rng.uniform(*params["noise_snr_db"]), rng.uniform(*MARGIN_RANGE_S),
                rng.getrandbits(63), params["sample_rate"])  # fmt: skip


def _plan(params: Mapping[str, Any]) -> tuple[dict[str, list[Speaker]], list[_Utterance]]:
    """All speakers and utterances of the corpus described by ``params``."""
    rng = random.Random(params["seed"])
    speakers: dict[str, list[Speaker]] = {}
    utterances: list[_Utterance] = []
    seen: set[str] = set()
    next_speaker, next_chapter = FIRST_SPEAKER_ID, FIRST_CHAPTER_ID
    for split in PLAN_ORDER:
        size = params["sizes"].get(split, 0)
        if size == 0:
            continue
        split_speakers = _speakers(rng, split, min(params["speakers"][split], size), next_speaker)
        next_speaker += len(split_speakers)
        speakers[split] = split_speakers
        texts = iter(_texts(rng, size, params["words"], seen))
        for k, speaker in enumerate(split_speakers):
            count = size // len(split_speakers) + (k < size % len(split_speakers))
            chapters = math.ceil(count / MAX_UTTERANCES_PER_CHAPTER)
            for c in range(chapters):
                chapter, next_chapter = next_chapter, next_chapter + 1
                for index in range(count * (c + 1) // chapters - count * c // chapters):
                    relpath = f"{split}/{speaker.id}/{chapter}/{speaker.id}-{chapter}-{index:04d}.flac"
                    text = next(texts)
                    job = _job(rng, relpath, text, speaker, params)
                    utterances.append(_Utterance(split, speaker, chapter, index, text, job))
    return speakers, utterances


# --- writing the text files and installing the corpus -----------------------------------------------
def _write_transcripts(root: Path, utterances: Sequence[_Utterance]) -> None:
    chapters: dict[Path, list[str]] = {}
    for u in utterances:
        folder = root / u.split / str(u.speaker.id) / str(u.chapter)
        chapters.setdefault(folder / f"{u.speaker.id}-{u.chapter}.trans.txt", []).append(
            f"{u.utterance_id} {u.transcript.upper()}\n"
        )
    for path, lines in chapters.items():
        path.write_text("".join(sorted(lines)), encoding="utf-8")


def _write_speakers(root: Path, speakers: Mapping[str, list[Speaker]], utterances: Sequence[_Utterance],
                    durations: Sequence[float]) -> None:  # fmt: skip
    counts: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for u, duration in zip(utterances, durations):
        counts[u.speaker.id] = counts.get(u.speaker.id, 0) + 1
        seconds[u.speaker.id] = seconds.get(u.speaker.id, 0.0) + duration
    for split, split_speakers in speakers.items():
        lines = ["speaker\tlanguage\tvariant\tpitch\trate\tutterances\tseconds\n"]
        lines += [f"{s.id}\t{s.language}\t{s.variant}\t{s.pitch}\t{s.rate}\t{counts.get(s.id, 0)}\t"
                  f"{seconds.get(s.id, 0.0):.2f}\n" for s in split_speakers]  # fmt: skip
        (root / split / "speakers.tsv").write_text("".join(lines), encoding="utf-8")


def _install(built: Path, root: Path, params: Mapping[str, Any]) -> None:
    """Rename the finished corpus into place (another process may have finished the same one first)."""
    with contextlib.suppress(OSError):
        root.rmdir()  # an empty folder the caller made
    try:
        os.replace(built, root)
    except OSError:
        if _read_parameters(root) != params:
            raise
        shutil.rmtree(built, ignore_errors=True)


def _remove_stale_builds(root: Path) -> None:
    """Delete build folders of ``root`` left by killed runs (their process no longer exists)."""
    for folder in root.parent.glob(f".{root.name}{PARTIAL_TAG}*"):
        pid = folder.name[len(f".{root.name}{PARTIAL_TAG}") :].split("-", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# --- parameters and the public entry point ----------------------------------------------------------
def _parameters(seed: int, sizes: Mapping[str, int], speakers: Mapping[str, int], sample_rate: int,
                words: Sequence[str] | None, noise_snr_db: tuple[float, float]) -> dict[str, Any]:  # fmt: skip
    """Validated parameters in the JSON form stored in the marker file."""
    unknown = set(sizes) - set(SPLITS)
    if unknown or any(not isinstance(n, int) or n < 0 for n in sizes.values()):
        raise ValueError(f"sizes must map splits among {SPLITS} to counts >= 0, got {dict(sizes)}")
    if set(speakers) != set(SPLITS) or any(not isinstance(n, int) or n < 1 for n in speakers.values()):
        raise ValueError(f"speakers must map each of {SPLITS} to a count >= 1, got {dict(speakers)}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    low, high = (float(x) for x in noise_snr_db)
    if low > high:
        raise ValueError(f"noise_snr_db must be (low, high) with low <= high, got {noise_snr_db}")
    if words is not None:
        sentences.sentences(random.Random(0), 1, words)  # raises ValueError for unusable words
    return {
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "sizes": {split: sizes[split] for split in SPLITS if split in sizes},
        "speakers": {split: speakers[split] for split in SPLITS},
        "sample_rate": sample_rate,
        "words": list(words) if words is not None else None,
        "noise_snr_db": [low, high],
    }


def _read_parameters(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / MARKER).read_text(encoding="utf-8"))["parameters"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_existing(root: Path, params: Mapping[str, Any]) -> bool:
    """True if ``root`` already holds this corpus; ValueError if it holds anything else."""
    existing = _read_parameters(root)
    if existing == params:
        return True
    if existing is not None:
        changed = sorted(k for k in set(params) | set(existing) if params.get(k) != existing.get(k))
        raise ValueError(f"{root} holds a synthetic corpus generated with different parameters "
                         f"({', '.join(changed)}); delete that folder or choose another root")  # fmt: skip
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} exists but is not a complete synthetic corpus (no {MARKER}); "
                         "delete it or choose another root")  # fmt: skip
    return False


def generate(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    sizes: Mapping[str, int] = DEFAULT_SIZES,
    speakers: Mapping[str, int] = DEFAULT_SPEAKERS,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    words: Sequence[str] | None = None,
    noise_snr_db: tuple[float, float] = DEFAULT_NOISE_SNR_DB,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the synthetic corpus under ``root`` once; later calls return at once.

    Returns split name -> split folder for every split with utterances. ``speakers`` gives the
    number of distinct speakers per split (capped by its utterances). ``words`` replaces the
    grammar with random 2-6 word sequences of those words (for fast tests). Raises ValueError if
    ``root`` holds a corpus made with other parameters, or anything else.
    """
    root = Path(root)
    params = _parameters(seed, sizes, speakers, sample_rate, words, noise_snr_db)
    splits = {split: root / split for split, size in params["sizes"].items() if size > 0}
    if _check_existing(root, params):
        return splits
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(root)
    built = Path(tempfile.mkdtemp(prefix=f".{root.name}{PARTIAL_TAG}{os.getpid()}-", dir=root.parent))
    try:
        speakers, utterances = _plan(params)
        durations = render_all([u.job for u in utterances], built, num_workers, progress)
        _write_transcripts(built, utterances)
        _write_speakers(built, speakers, utterances, durations)
        hours = {s: sum(d for u, d in zip(utterances, durations) if u.split == s) / 3600 for s in splits}
        marker = {"parameters": params, "utterances": len(utterances), "hours": hours}
        (built / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _install(built, root, params)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return splits


class SyntheticCorpus:
    """The built-in corpus as a training corpus (``asr.data.corpora.base.Corpus``).

    ``prepare()`` generates the audio on first use (see :func:`generate`) and writes one manifest
    per split to ``root/<split>.jsonl`` (audio paths relative to ``root``); both are cached, so later runs start at once.
    Arguments are those of :func:`generate`.
    """

    def __init__(self, root: str | os.PathLike, seed: int = 0, sizes: Mapping[str, int] = DEFAULT_SIZES,
                 speakers: Mapping[str, int] = DEFAULT_SPEAKERS,
                 sample_rate: int = DEFAULT_SAMPLE_RATE, words: Sequence[str] | None = None,
                 noise_snr_db: Sequence[float] = DEFAULT_NOISE_SNR_DB, num_workers: int = 2,
                 progress: bool = True) -> None:
        self.root = Path(root)
        self.options = dict(seed=seed, sizes=dict(sizes), speakers=dict(speakers), sample_rate=sample_rate, words=words,
                            noise_snr_db=tuple(noise_snr_db), num_workers=num_workers, progress=progress)

    def _manifest(self, split: str) -> Path:
        return self.root / f"{split}.jsonl"

    def prepare(self) -> None:
        for split, folder in generate(self.root, **self.options).items():
            if not self._manifest(split).is_file():
                utterances, _ = from_librispeech(folder, progress=False)
                write_manifest(self._manifest(split), utterances)

    def manifests(self) -> dict[str, Path]:
        splits = {s: self._manifest(s) for s, n in self.options["sizes"].items() if n > 0}
        if not all(p.is_file() for p in splits.values()):
            raise CorpusError(f"{self.root}: the synthetic corpus is not generated yet; "
                              "'python scripts/train.py recipe=synthetic' generates it before training")
        return splits
