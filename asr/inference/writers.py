"""Output formats: transcripts -> text in the formats ``scripts/decode.py`` writes.

- ``txt``: the text of each recording, one line per recording.
- ``tsv``: ``<path><TAB><text>``, one line per recording.
- ``jsonl``: one JSON object per recording: ``{"path", "text", "duration", "words": [{"word",
  "start", "end", "confidence"}]}``, times in seconds.
- ``srt`` / ``vtt``: subtitles (SubRip / WebVTT) of one recording, its words grouped into cues of
  at most CUE_MAX_WORDS words, CUE_MAX_CHARS characters and CUE_MAX_SECONDS seconds, a new cue
  after a pause of CUE_PAUSE_SECONDS.

``txt``, ``tsv`` and ``jsonl`` are line formats (:func:`format_line`); subtitles are whole files
(:func:`format_subtitles`), one per recording.
"""

from __future__ import annotations

import json
from typing import Sequence

from asr.inference.alignment import Word
from asr.inference.recognizer import Transcript

LINE_FORMATS = ("tsv", "txt", "jsonl")
SUBTITLE_FORMATS = ("srt", "vtt")
FORMATS = LINE_FORMATS + SUBTITLE_FORMATS
TIMED_FORMATS = ("jsonl", "srt", "vtt")  # formats that need word times
CUE_MAX_WORDS = 12  # words per subtitle cue
CUE_MAX_CHARS = 84  # characters per cue: two lines of 42, the usual subtitle width
CUE_MAX_SECONDS = 6.0  # longest cue
CUE_PAUSE_SECONDS = 0.8  # a silence this long between words starts a new cue
TIME_DECIMALS = 3  # seconds in JSON lines are rounded to milliseconds


def format_line(t: Transcript, fmt: str) -> str:
    """One recording as a line of ``fmt`` (txt, tsv or jsonl)."""
    if fmt == "txt":
        return t.text
    if fmt == "tsv":
        return f"{t.path}\t{t.text}"
    if fmt == "jsonl":
        words = [{"word": w.word, "start": round(w.start, TIME_DECIMALS), "end": round(w.end, TIME_DECIMALS),
                  "confidence": round(w.confidence, TIME_DECIMALS)} for w in t.words]
        return json.dumps({"path": t.path, "text": t.text, "duration": round(t.duration, TIME_DECIMALS),
                           "words": words}, ensure_ascii=False)
    raise ValueError(f"not a line format: {fmt!r} (use one of {', '.join(LINE_FORMATS)})")


def cues(words: Sequence[Word]) -> list[list[Word]]:
    """Consecutive words grouped into subtitle cues (limits in the module docstring)."""
    out: list[list[Word]] = []
    for word in words:
        cue = out[-1] if out else None
        if cue is None or _full(cue, word):
            out.append([word])
        else:
            cue.append(word)
    return out


def _full(cue: list[Word], word: Word) -> bool:
    chars = sum(len(w.word) + 1 for w in cue) + len(word.word)
    return (len(cue) >= CUE_MAX_WORDS or chars > CUE_MAX_CHARS or word.end - cue[0].start > CUE_MAX_SECONDS
            or word.start - cue[-1].end >= CUE_PAUSE_SECONDS)


def timestamp(seconds: float, fmt: str) -> str:
    """``HH:MM:SS,mmm`` (srt) or ``HH:MM:SS.mmm`` (vtt)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


def format_subtitles(t: Transcript, fmt: str) -> str:
    """A whole SubRip (``srt``) or WebVTT (``vtt``) file for one recording."""
    if fmt not in SUBTITLE_FORMATS:
        raise ValueError(f"not a subtitle format: {fmt!r} (use one of {', '.join(SUBTITLE_FORMATS)})")
    blocks = []
    for n, cue in enumerate(cues(t.words), 1):
        span = f"{timestamp(cue[0].start, fmt)} --> {timestamp(cue[-1].end, fmt)}"
        text = " ".join(w.word for w in cue)
        blocks.append(f"{n}\n{span}\n{text}\n" if fmt == "srt" else f"{span}\n{text}\n")
    header = "WEBVTT\n\n" if fmt == "vtt" else ""
    return header + "\n".join(blocks)
