"""Test helper: a small ``an4_sphere.tar.gz`` in memory, in CMU AN4's layout, with SPHERE audio.

``an4/wav/an4_clstk/<spk>/<id>.sph`` (train) and ``an4/wav/an4test_clstk/<spk>/<id>.sph`` (test)
hold white noise written by soundfile as NIST SPHERE, 16 kHz 16-bit; ``an4/etc/an4_{train,test}
.fileids`` list them and ``an4/etc/an4_{train,test}.transcription`` transcribe them as AN4 does
(``<s> TEXT </s> (id)`` for train, ``TEXT (id)`` for test).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field

import numpy as np

from tests.fake_librispeech import SAMPLE_RATE, add_member, noise

WORDS = ["ENTER", "RUBOUT", "YES", "NO", "ONE", "TWO", "A", "B"]
# AN4's speaker IDs start with the speaker's sex (f/m); the real test speakers are fcaw, fjlp, ...
TRAIN_SPEAKERS = ("fash", "fbbh", "fclc", "fjam", "mblb", "mblw", "mcen", "mdxx", "mjgm", "mkdb")
TEST_SPEAKERS = ("fcaw", "mcel")
FOLDERS = {"train": "an4_clstk", "test": "an4test_clstk"}


@dataclass
class FakeAN4:
    archive: bytes
    md5: str
    durations: dict[str, dict[str, float]]  # split (train, test) -> utterance id -> exact seconds
    texts: dict[str, str]  # utterance id -> transcript
    corrupt: list[str] = field(default_factory=list)  # ids of training files whose SPHERE header is garbage


def make_an4(per_speaker: int = 2, corrupt: int = 0, seed: int = 0, seconds: tuple[float, float] = (0.5, 1.25),
             train_speakers: tuple[str, ...] = TRAIN_SPEAKERS, test_speakers: tuple[str, ...] = TEST_SPEAKERS
             ) -> FakeAN4:
    """``per_speaker`` utterances of each speaker; the last ``corrupt`` training files unreadable."""
    rng = np.random.default_rng(seed)
    buf, durations, texts, bad = io.BytesIO(), {"train": {}, "test": {}}, {}, []
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add_member(tar, "an4/README", b"fake AN4\n")
        number = 0
        for split, speakers in (("train", train_speakers), ("test", test_speakers)):
            fileids, lines = [], []
            for spk in speakers:
                for _ in range(per_speaker):
                    number += 1
                    utt = f"an{number}-{spk}-b"
                    data, frames = noise(rng, seconds, "NIST")
                    if split == "train" and number > len(speakers) * per_speaker - corrupt:
                        data = b"NIST_1A\n" + rng.bytes(64)  # a SPHERE signature, then garbage
                        bad.append(utt)
                    else:
                        durations[split][utt] = frames / SAMPLE_RATE
                    texts[utt] = " ".join(rng.choice(WORDS, 3))
                    fileids.append(f"{FOLDERS[split]}/{spk}/{utt}")
                    lines.append(f"<s> {texts[utt]} </s> ({utt})" if split == "train" else f"{texts[utt]} ({utt})")
                    add_member(tar, f"an4/wav/{fileids[-1]}.sph", data)
            add_member(tar, f"an4/etc/an4_{split}.fileids", "\n".join(fileids).encode() + b"\n")
            add_member(tar, f"an4/etc/an4_{split}.transcription", "\n".join(lines).encode() + b"\n")
    archive = buf.getvalue()
    return FakeAN4(archive, hashlib.md5(archive).hexdigest(), durations, texts, bad)
