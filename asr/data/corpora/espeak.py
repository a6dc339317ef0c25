"""Text -> speech with eSpeak NG: a thin ctypes wrapper over the libespeak-ng that ships in the
``espeakng-loader`` wheel (no system package, no root).

In: English text, a voice name ``"<language>+<variant>"`` (e.g. ``"en-us+m3"``), a speaking rate in
words per minute and a base pitch on eSpeak's 0-100 scale. Out: float32 mono samples in [-1, 1] and
their sample rate (22,050 Hz, eSpeak's native rate).

Determinism. libespeak-ng keeps hidden state between calls (function-local statics for the pitch
"flutter" position, the gain control and cycle counters), so the same call gives slightly different
samples depending on what the process synthesized before, and no API call resets that state. Where
``os.fork`` exists, :func:`synthesize` therefore sends each request to a small helper process (this
file run as a script: no torch, so forking it is cheap) that has initialised eSpeak but never
synthesized; the helper forks a child per request, the child synthesizes from that pristine state
and pipes the samples back. The output depends only on the arguments. Without fork (Windows) it
synthesizes in-process, and repeated calls may differ in the last bits.

eSpeak silently ignores an unknown variant after ``+``; this module checks that the variant file
exists and raises :class:`RuntimeError` naming the voice instead.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import struct
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used, so the helper process (forked per request) stays small
    import numpy as np

# --- libespeak-ng constants (speak_lib.h, API revision 12) ---
_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: retrieval mode, espeak_Synth returns when done
_BUFFER_MS = 200  # length of the sound buffers handed to the callback (0 means 60 ms)
_INIT_OPTIONS = 0  # no phoneme events
_POS_CHARACTER = 1  # espeak_POSITION_TYPE: positions count characters
_CHARS_UTF8 = 1  # espeak_Synth flag: the text is UTF-8
_EE_OK = 0  # espeak_ERROR: success
_PARAM_RATE = 1  # espeak_PARAMETER: words per minute
_PARAM_PITCH = 3  # espeak_PARAMETER: base pitch, 0-100
_PARAM_RANGE = 4  # espeak_PARAMETER: pitch range (intonation), 0-100
_RAND_SEED = 1  # seed for eSpeak's own noise generator (breathy and Klatt voices)
_INT16_SCALE = 32768.0  # int16 sample -> float in [-1, 1)

# --- accepted argument ranges ---
RATE_MIN, RATE_MAX = 80, 450  # words per minute (espeakRATE_MINIMUM, espeakRATE_MAXIMUM)
PITCH_MIN, PITCH_MAX = 0, 100  # eSpeak's pitch scale; 50 is the voice's own pitch
DEFAULT_PITCH_RANGE = 50  # eSpeak's default intonation range

# --- the helper process ---
_SERVE_FLAG = "--serve"  # argument that makes this file run as the helper
_HEADER = "<iiI"  # helper reply: status code, sample rate, number of sample bytes; then the bytes
_PIPE_BLOCK = 1 << 20  # bytes read from a pipe at a time

# --- status codes (also the exit codes of the forked synthesis child) ---
_EXIT_OK = 0
_EXIT_BAD_VOICE = 3
_EXIT_SYNTH_FAILED = 4
_EXIT_CRASHED = 5

# English languages (files in espeak-ng-data/lang/gmw) that read English text with a distinct accent.
ENGLISH_LANGUAGES: tuple[str, ...] = (
    "en-us",  # General American
    "en",  # British (southern England)
    "en-gb-x-rp",  # British Received Pronunciation
    "en-gb-scotland",  # Scottish
    "en-029",  # Caribbean
    "en-us-nyc",  # New York City
    "en-gb-x-gbclan",  # Lancashire
    "en-gb-x-gbcwmd",  # West Midlands
)

# Voice variants (files in espeak-ng-data/voices/!v) that sound like plausible human speech. Each was
# synthesized on every language above at pitch 25 and 75 and kept only with a sane level, length (within
# about 20% of the plain voice), voicing (periodic frames) and no clipping. Left out: whisper, whisperf,
# caleb, klatt, klatt2 (unvoiced or breathy), croak, grandpa, grandma (heavy flutter), david, Storm, ian
# (voicing collapses at low pitch), Demonic, UniRobot, anikaRobot, announcer, robosoft*, RicishayMax*,
# Marco, Alicia (robot or echo effects), iven, Jacky, antonio (clipping), AnxiousAndy, Andy, Lee, Tweaky,
# kaukovalta (formants moved far off), zac (cartoon pitch), fast (a test voice), "Mr serious" (a space in
# the name).
SPEECH_VARIANTS: tuple[str, ...] = (
    "Alex", "Andrea", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Mario", "Michael",
    "Mike", "Nguyen", "Reed", "adam", "anika", "aunty", "belinda", "benjamin", "boris", "ed", "edward",
    "edward2", "f1", "f2", "f3", "f4", "f5", "gustave", "iven2", "iven3", "iven4", "john", "klatt3",
    "klatt4", "klatt5", "klatt6", "linda", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max",
    "michel", "miguel", "mike2", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "steph2", "steph3", "travis", "victor",
)  # fmt: skip


@dataclass(frozen=True)
class _Request:
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int


_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """libespeak-ng in this process, initialised once, with the callback that collects samples."""

    def __init__(self) -> None:
        import espeakng_loader  # optional dependency: the ``tts`` extra

        self.data_path = Path(espeakng_loader.get_data_path())
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare_signatures()
        self.chunks: list[bytes] = []
        # Kept referenced for the life of the process: eSpeak calls it long after this returns.
        self.callback = _CALLBACK_TYPE(self._on_samples)
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, str(self.data_path).encode(), _INIT_OPTIONS
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data folder {self.data_path})")
        self.lib.espeak_SetSynthCallback(self.callback)

    def _declare_signatures(self) -> None:
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None

    def _on_samples(self, wav: ctypes._Pointer, n: int, events: int) -> int:
        if wav and n > 0:
            self.chunks.append(ctypes.string_at(wav, n * 2))
        return 0  # continue synthesis

    def run(self, request: _Request) -> tuple[int, bytes]:
        """Synthesize in this process: (status code, int16 little-endian sample bytes)."""
        self.chunks.clear()
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed(_RAND_SEED)
        if self.lib.espeak_SetVoiceByName(request.voice.encode()) != _EE_OK:
            return _EXIT_BAD_VOICE, b""
        for param, value in ((_PARAM_RATE, request.rate), (_PARAM_PITCH, request.pitch),
                             (_PARAM_RANGE, request.pitch_range)):  # fmt: skip
            self.lib.espeak_SetParameter(param, value, 0)
        text = request.text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            return _EXIT_SYNTH_FAILED, b""
        return _EXIT_OK, b"".join(self.chunks)


def _read_all(fd: int) -> bytes:
    parts = []
    while block := os.read(fd, _PIPE_BLOCK):
        parts.append(block)
    return b"".join(parts)


def _run_forked(engine: _Engine, request: _Request) -> tuple[int, bytes]:
    """Fork, synthesize in the child from eSpeak's untouched state, pipe the samples back."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller's code
        code = _EXIT_CRASHED
        try:
            os.close(read_fd)
            code, data = engine.run(request)
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
        except BaseException:
            code = _EXIT_CRASHED
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_all(read_fd)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (code, data) if code in (_EXIT_OK, _EXIT_BAD_VOICE, _EXIT_SYNTH_FAILED) else (_EXIT_CRASHED, b"")


def _serve() -> None:
    """The helper's main loop: one JSON request per stdin line, one header + samples per reply."""
    engine = _Engine()
    reply = sys.stdout.buffer
    for line in sys.stdin.buffer:
        code, data = _run_forked(engine, _Request(**json.loads(line)))
        reply.write(struct.pack(_HEADER, code, engine.sample_rate, len(data)) + data)
        reply.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise RuntimeError("the eSpeak helper process stopped (its error, if any, is on stderr)")
    return data


class _Helper:
    """The parent side of the helper process: started on first use, one per process."""

    def __init__(self) -> None:
        # -I: no script folder or user site on sys.path, so nothing shadows the stdlib.
        command = [sys.executable, "-I", str(Path(__file__).resolve()), _SERVE_FLAG]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.owner = os.getpid()
        self.lock = threading.Lock()
        atexit.register(self.close)

    def request(self, request: _Request) -> tuple[int, int, bytes]:
        """(status code, sample rate, sample bytes)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                self.process.stdin.write(json.dumps(asdict(request)).encode() + b"\n")
                self.process.stdin.flush()
            except BrokenPipeError as error:
                raise RuntimeError("the eSpeak helper process stopped (see stderr)") from error
            header = _read_exactly(self.process.stdout, struct.calcsize(_HEADER))
            code, rate, size = struct.unpack(_HEADER, header)
            return code, rate, _read_exactly(self.process.stdout, size)

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def close(self) -> None:
        if self.owner == os.getpid() and self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]  # the helper exits at end of input
            self.process.wait()


_helper: _Helper | None = None
_engine: _Engine | None = None  # in-process engine, only where os.fork does not exist


def _synthesize_bytes(request: _Request) -> tuple[int, int, bytes]:
    global _helper, _engine
    if not hasattr(os, "fork"):
        if _engine is None:
            _engine = _Engine()
        code, data = _engine.run(request)
        return code, _engine.sample_rate, data
    if _helper is None or not _helper.alive():
        _helper = _Helper()
    return _helper.request(request)


def variant_exists(variant: str) -> bool:
    """Whether espeak-ng-data/voices/!v holds this variant (eSpeak ignores unknown ones silently)."""
    import espeakng_loader

    return (Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant).is_file()


def synthesize(
    text: str, voice: str, rate: int, pitch: int, pitch_range: int = DEFAULT_PITCH_RANGE
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice`` ("<language>[+<variant>]") at ``rate`` words per minute.

    ``pitch`` (0-100, 50 = the voice's own) scales the base pitch, ``pitch_range`` (0-100) the
    intonation. Returns (float32 mono samples in [-1, 1], sample rate in Hz). Raises ValueError for
    an out-of-range argument and RuntimeError when eSpeak rejects the voice or fails.
    """
    import numpy as np

    if not RATE_MIN <= rate <= RATE_MAX:
        raise ValueError(f"rate must be {RATE_MIN}-{RATE_MAX} words per minute, got {rate}")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not PITCH_MIN <= value <= PITCH_MAX:
            raise ValueError(f"{name} must be {PITCH_MIN}-{PITCH_MAX}, got {value}")
    _, _, variant = voice.partition("+")
    if variant and not variant_exists(variant):
        raise RuntimeError(f"eSpeak has no voice variant {variant!r} (voice {voice!r})")
    code, sample_rate, data = _synthesize_bytes(_Request(text, voice, int(rate), int(pitch), int(pitch_range)))
    if code == _EXIT_BAD_VOICE:
        raise RuntimeError(f"eSpeak rejected voice {voice!r}")
    if code != _EXIT_OK:
        raise RuntimeError(f"eSpeak failed to synthesize {text!r} with voice {voice!r} (code {code})")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / _INT16_SCALE
    return samples, sample_rate


def list_english_voices() -> list[str]:
    """Every "<language>+<variant>" combination of ENGLISH_LANGUAGES and SPEECH_VARIANTS."""
    return [f"{language}+{variant}" for language in ENGLISH_LANGUAGES for variant in SPEECH_VARIANTS]


if __name__ == "__main__" and sys.argv[1:] == [_SERVE_FLAG]:
    _serve()
