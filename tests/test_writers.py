"""Every output format, written and parsed back."""

import json
import re

import pytest

from asr.inference.alignment import Word
from asr.inference.recognizer import Transcript
from asr.inference.writers import CUE_MAX_SECONDS, CUE_MAX_WORDS, cues, format_line, format_subtitles, timestamp

WORDS = [Word("good", 0.52, 0.80, 0.91), Word("morning", 0.84, 1.30, 0.88),  # one cue
         Word("it's", 3.10, 3.30, 0.7), Word("raining", 3.32, 3.90, 0.95)]  # after a 1.8 s pause: another
T = Transcript("/audio/a b.flac", "good morning it's raining", 4.25, WORDS)

_CUE = re.compile(r"(?:(\d+)\n)?(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)\n(.+)\n")


def parse_subtitles(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of an SRT or WebVTT file."""
    out = []
    for m in _CUE.finditer(text):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, m.groups()[1:9])
        out.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, m.group(10)))
    return out


def test_txt_and_tsv_lines():
    assert format_line(T, "txt") == "good morning it's raining"
    path, text = format_line(T, "tsv").split("\t")
    assert (path, text) == ("/audio/a b.flac", T.text)


def test_jsonl_round_trip():
    row = json.loads(format_line(T, "jsonl"))
    assert row["path"] == T.path and row["text"] == T.text and row["duration"] == 4.25
    assert [Word(**w) for w in row["words"]] == WORDS


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_round_trip(fmt):
    text = format_subtitles(T, fmt)
    assert text.startswith("WEBVTT\n\n") if fmt == "vtt" else text.startswith("1\n00:00:00,520 --> ")
    parsed = parse_subtitles(text)
    assert parsed == [(0.52, 1.30, "good morning"), (3.10, 3.90, "it's raining")]
    if fmt == "srt":
        assert [int(n) for n in re.findall(r"^(\d+)$", text, re.M)] == [1, 2]


def test_cues_split_on_pauses_length_and_word_count():
    many = [Word(f"w{i}", 0.3 * i, 0.3 * i + 0.2, 1.0) for i in range(30)]
    groups = cues(many)
    assert [w for g in groups for w in g] == many
    assert all(len(g) <= CUE_MAX_WORDS for g in groups)
    assert all(g[-1].end - g[0].start <= CUE_MAX_SECONDS for g in groups)
    assert [len(g) for g in cues(WORDS)] == [2, 2]


def test_timestamps_past_an_hour():
    assert timestamp(3725.5, "srt") == "01:02:05,500" and timestamp(3725.5, "vtt") == "01:02:05.500"


def test_empty_transcript_gives_an_empty_but_valid_file():
    empty = Transcript("x.wav", "", 2.0, [])
    assert format_subtitles(empty, "vtt") == "WEBVTT\n\n" and format_subtitles(empty, "srt") == ""
    assert json.loads(format_line(empty, "jsonl"))["words"] == []
