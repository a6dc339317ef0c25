"""CMU AN4 (the "census" alphanumeric database): ``an4_sphere.tar.gz`` -> train, dev and test manifests.

AN4 is 948 training and 130 test utterances (CMU's README) of people spelling names and
addresses, saying digits and short control words ("ENTER", "RUBOUT"), recorded with a close-talking
microphone at 16 kHz, 16-bit, as NIST SPHERE files (read by soundfile like any other audio).
The archive holds::

    an4/wav/an4_clstk/<spk>/<fileid>.sph         training recordings (74 speakers)
    an4/wav/an4test_clstk/<spk>/<fileid>.sph     test recordings (10 other speakers)
    an4/etc/an4_{train,test}.fileids             one path per line, relative to wav/, no extension
    an4/etc/an4_{train,test}.transcription       "<s> TEXT </s> (fileid)" (the test file may omit the tags)

Out, in ``root``: ``an4/`` (extracted), ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (exact
durations from the SPHERE headers) and ``<split>.skipped.tsv`` for files left out, through the
same download, verification and extraction as LibriSpeech (:mod:`asr.data.corpora.archive`).

The dev set: AN4 has only train and test, so ``dev_speakers`` training speakers are held out
(8 of the 74 by default, about 100 utterances, near the test set's 130). Whole speakers, because
the test speakers are never heard in training, and a dev set of training voices would make the
validation WER that picks the checkpoint optimistic. Which ones is a fixed function of the
speaker IDs, so every machine gets the same split with no seed: the IDs are grouped by their
first letter (AN4's IDs start with f or m, the speaker's sex), each group gives its share of
the held-out speakers (in proportion to its size, largest remainders first), and the speakers a
group gives are spread evenly over its IDs in alphabetical order. A list of IDs picks them
instead. The held-out speakers are those of ``dev.jsonl``; changing ``dev_speakers`` splits the
extracted folder again on the next ``prepare()``.

CMU publishes no checksum for the archive, and none of lhotse, ESPnet, NeMo or deepspeech.pytorch
checks one (deepspeech.pytorch downloads a re-packed archive of its own); so the download is
checked for completeness only (the server's Content-Length, then a readable archive with the
files above), its MD5 is logged, and a mismatch with CMU's published utterance counts is a
warning. Pin the MD5 of a copy you trust with ``checksums`` (``--md5sums``) to check later
downloads against it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from asr.data.corpora.archive import ArchiveCorpus, Indexed
from asr.data.corpora.base import CorpusError
from asr.data.manifest import ManifestError, Problem, read_manifest, with_durations

log = logging.getLogger(__name__)

ARCHIVE = "an4_sphere"  # an4_sphere.tar.gz: the SPHERE version ("NIST's Sphere audio (.sph) format (64M)")
INNER = "an4"
# CMU (plain HTTP only); NeMo's copy of the same archive: https://dldata-public.s3.us-east-2.amazonaws.com
DEFAULT_MIRROR = "http://www.speech.cs.cmu.edu/databases/an4"
DEFAULT_ROOT = "data/an4"  # asr/conf/data/an4.yaml: ${paths.data_dir}/an4
DEFAULT_DEV_SPEAKERS = 8
TRAIN, DEV, TEST = "train", "dev", "test"
LISTS = {TRAIN: "an4_train", TEST: "an4_test"}  # etc/<name>.fileids and etc/<name>.transcription
PUBLISHED_UTTERANCES = {TRAIN: 948, TEST: 130}  # CMU's README (the dev set comes out of train)
AUDIO_SUFFIX = ".sph"
# "<s> TEXT </s> (fileid)" or "TEXT (fileid)"
_TRANSCRIPT = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")


class AN4Corpus(ArchiveCorpus):
    """CMU AN4 as train, dev and test manifests (see the module docstring).

    Args:
        root: where the corpus is prepared.
        source: a folder with ``an4_sphere.tar.gz`` or an extracted ``an4/`` you already have.
        download: fetch the archive from ``mirror`` when neither ``root`` nor ``source`` has it.
        mirror: base URL holding ``an4_sphere.tar.gz``.
        dev_speakers: how many training speakers to hold out as the dev set, or their IDs.
        keep_archives: keep the downloaded archive after extraction.
        checksums: ``{"an4_sphere": md5}`` to verify the archive against (none is published).
        progress: show progress bars.
    """

    name = "AN4"
    default_root = DEFAULT_ROOT
    default_mirror = DEFAULT_MIRROR
    published_checksums: Mapping[str, str | None] = MappingProxyType({ARCHIVE: None})

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, source: str | os.PathLike | None = None,
                 download: bool = False, mirror: str = DEFAULT_MIRROR,
                 dev_speakers: int | Sequence[str] = DEFAULT_DEV_SPEAKERS, keep_archives: bool = False,
                 checksums: Mapping[str, str | None] | None = None, progress: bool = True) -> None:
        super().__init__(root, [ARCHIVE], source, download, mirror, (), keep_archives, 1,
                         {**self.published_checksums, **(checksums or {})}, progress)
        self.dev_speakers = dev_speakers if isinstance(dev_speakers, int) else list(dev_speakers)

    def url(self, archive: str) -> str:
        return f"{self.mirror}/{archive}.tar.gz"

    def inner(self, archive: str) -> str:
        return INNER

    def splits(self, archive: str) -> list[str]:
        return [TRAIN, DEV, TEST]

    def prepare_command(self, archives: Sequence[str]) -> str:
        source = f" --source {self.source}" if self.source else ""
        return f"python scripts/prepare.py an4 --root {self.root}{source}"

    def stale(self, archive: str) -> bool:
        """Also when the dev manifest does not hold the speakers ``dev_speakers`` picks now."""
        if super().stale(archive):
            return True
        folder = self._extracted(archive)
        if folder is None:  # nothing to split again
            return False
        try:
            wanted = set(self.held_out(sorted({spk for spk, _ in _read_list(folder, TRAIN)[0]})))
            dev = {u.speaker for u in read_manifest(self.manifest_path(DEV))}
            present = dev | {u.speaker for u in read_manifest(self.manifest_path(TRAIN))}
        except (CorpusError, ManifestError, OSError):
            return True
        return wanted & present != dev

    def held_out(self, speakers: Sequence[str]) -> list[str]:
        """The dev speakers among the training ``speakers`` (see the module docstring)."""
        if not isinstance(self.dev_speakers, int):
            unknown = sorted(set(self.dev_speakers) - set(speakers))
            if unknown:
                raise CorpusError(f"dev_speakers {unknown} are not AN4 training speakers; they are: "
                                  f"{' '.join(speakers)}")
            return sorted(set(self.dev_speakers))
        if not 0 <= self.dev_speakers < len(speakers):
            raise CorpusError(f"dev_speakers={self.dev_speakers}: choose 0 to {len(speakers) - 1} of the "
                              f"{len(speakers)} AN4 training speakers")
        groups: dict[str, list[str]] = {}
        for speaker in sorted(speakers):
            groups.setdefault(speaker[:1], []).append(speaker)
        shares = {g: self.dev_speakers * len(members) / len(speakers) for g, members in groups.items()}
        counts = {g: math.floor(share) for g, share in shares.items()}
        for g in sorted(groups, key=lambda g: (counts[g] - shares[g], g))[: self.dev_speakers - sum(counts.values())]:
            counts[g] += 1
        return sorted(members[int((i + 0.5) * len(members) / counts[g])]
                      for g, members in groups.items() for i in range(counts[g]))

    def index(self, archive: str, folder: Path) -> Indexed:
        """The extracted ``an4/`` -> train, dev and test utterances with exact durations."""
        (train, train_problems), (test, test_problems) = _read_list(folder, TRAIN), _read_list(folder, TEST)
        for split, entries in ((TRAIN, train), (TEST, test)):
            if len(entries) != PUBLISHED_UTTERANCES[split]:
                log.warning("%s: %d %s utterances listed where CMU's AN4 has %d: is it the official archive?",
                            folder, len(entries), split, PUBLISHED_UTTERANCES[split])
        dev_speakers = set(self.held_out(sorted({spk for spk, _ in train})))
        log.info("AN4 dev speakers (held out of training): %s", " ".join(sorted(dev_speakers)))
        dev_problems = [p for p in train_problems if _speaker_of(p.path) in dev_speakers]
        train_problems = [p for p in train_problems if p not in dev_problems]
        parts = {TRAIN: ([e for spk, e in train if spk not in dev_speakers], train_problems),
                 DEV: ([e for spk, e in train if spk in dev_speakers], dev_problems),
                 TEST: ([e for _, e in test], test_problems)}
        return {split: with_durations(entries, problems, self.progress)
                for split, (entries, problems) in parts.items()}

    # --- scripts/prepare.py -------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The options of ``prepare.py an4`` beyond the common ones."""
        parser.add_argument("--dev-speakers", nargs="+", default=[str(DEFAULT_DEV_SPEAKERS)], metavar="N|ID",
                            help="how many training speakers to hold out as the dev set, spread over both sexes "
                                 f"(default {DEFAULT_DEV_SPEAKERS}), or their IDs")

    @classmethod
    def options(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The keyword arguments of the constructor that ``add_arguments``'s options set."""
        names = args.dev_speakers
        return dict(dev_speakers=int(names[0]) if len(names) == 1 and names[0].isdigit() else names)


def _read_list(folder: Path, split: str) -> tuple[list[tuple[str, tuple[str, Path, str, str]]], list[Problem]]:
    """``etc/an4_<split>.{fileids,transcription}`` -> [(speaker, (id, audio, text, speaker))] and
    the lines that could not be used."""
    name = LISTS[split]
    fileids, transcription = folder / "etc" / f"{name}.fileids", folder / "etc" / f"{name}.transcription"
    for path in (fileids, transcription):
        if not path.is_file():
            raise CorpusError(f"{folder}: no etc/{path.name}; is it the AN4 archive (an4_sphere.tar.gz)?")
    texts, problems = {}, []
    for lineno, line in enumerate(transcription.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _TRANSCRIPT.match(line)
        if match is None or not match["text"]:
            problems.append(Problem(f"{transcription}:{lineno}", "not '<s> TEXT </s> (fileid)'"))
        else:
            texts[match["id"]] = match["text"]
    entries = []
    for line in fileids.read_text(encoding="utf-8", errors="replace").split():
        path = Path(line)
        audio = folder / "wav" / path.with_name(path.name + AUDIO_SUFFIX)
        text = texts.pop(path.name, None)
        if text is None:
            problems.append(Problem(str(audio), f"no transcript in {transcription.name}"))
        else:
            entries.append((path.parent.name, (path.name, audio, text, path.parent.name)))
    problems += [Problem(f"{transcription}", f"{utt} is not in {fileids.name}") for utt in texts]
    return entries, problems


def _speaker_of(path: str) -> str:
    """The speaker folder of an audio path (``.../<spk>/<fileid>.sph``)."""
    return Path(path).parent.name
