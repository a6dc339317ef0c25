"""The built-in synthetic corpus: eSpeak wrapper, sentence grammar and LibriSpeech-layout generator."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
sf = pytest.importorskip("soundfile")

from asr.data.corpora import espeak, sentences, synthetic, synthetic_audio  # noqa: E402

WORDS = ["hello", "world", "yes", "no", "stop", "go", "don't"]
SIZES = {"train": 6, "dev": 3, "test": 3}
TRANSCRIPT_LINE = re.compile(r"(\d+)-(\d+)-(\d{4}) ([A-Z']+(?: [A-Z']+)*)")
SENTENCE = re.compile(r"[a-z']+(?: [a-z']+)*")
COVERAGE_SAMPLE = 50_000  # sentences drawn to check that every VOCABULARY word can appear


def _generate(root: Path, **overrides) -> dict[str, Path]:
    kwargs = dict(seed=0, sizes=SIZES, words=WORDS, num_workers=0, progress=False) | overrides
    return synthetic.generate(root, **kwargs)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _speakers(split_dir: Path) -> list[dict[str, str]]:
    header, *rows = (line.split("\t") for line in (split_dir / "speakers.tsv").read_text().splitlines())
    return [dict(zip(header, row)) for row in rows]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("synthetic") / "corpus"
    return root, _generate(root)


# --- the corpus -------------------------------------------------------------------------------------
def test_layout_and_transcripts_are_librispeech(corpus: tuple[Path, dict[str, Path]]) -> None:
    root, splits = corpus
    assert splits == {split: root / split for split in SIZES}
    for split, folder in splits.items():
        flacs = sorted(folder.glob("*/*/*.flac"))
        assert len(flacs) == SIZES[split]
        ids = set()
        for trans in folder.glob("*/*/*.trans.txt"):
            speaker, chapter = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{speaker}-{chapter}.trans.txt"
            for line in trans.read_text().splitlines():
                match = TRANSCRIPT_LINE.fullmatch(line)
                assert match, line
                assert match.group(1, 2) == (speaker, chapter)
                assert {w.lower() for w in match.group(4).split()} <= set(WORDS)
                ids.add(line.split()[0])
        assert ids == {p.stem for p in flacs}


def test_audio_is_16khz_mono_flac(corpus: tuple[Path, dict[str, Path]]) -> None:
    root, _ = corpus
    for path in root.rglob("*.flac"):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
        assert info.duration > 0.3
        audio, _ = sf.read(str(path))
        assert 0.05 < np.abs(audio).max() <= 1.0


def test_dev_and_test_voices_are_never_heard_in_training(corpus: tuple[Path, dict[str, Path]]) -> None:
    _, splits = corpus
    variants = {split: {row["variant"] for row in _speakers(folder)} for split, folder in splits.items()}
    speaker_ids = {split: {row["speaker"] for row in _speakers(folder)} for split, folder in splits.items()}
    assert not variants["test"] & variants["train"] and not variants["dev"] & variants["train"]
    assert not speaker_ids["test"] & speaker_ids["train"] and not speaker_ids["dev"] & speaker_ids["train"]
    pools = synthetic.VARIANT_POOLS
    assert not set(pools["train"]) & set(pools["test"]) and not set(pools["train"]) & set(pools["dev"])
    assert not set(pools["dev"]) & set(pools["test"])
    assert set(pools["train"]) | set(pools["dev"]) | set(pools["test"]) == set(espeak.SPEECH_VARIANTS)


def test_every_language_appears_in_every_split() -> None:
    params = synthetic._parameters(0, synthetic.DEFAULT_SIZES, synthetic.DEFAULT_SPEAKERS, 16000, None, (25.0, 45.0))
    speakers, _ = synthetic._plan(params)
    for split_speakers in speakers.values():
        assert {s.language for s in split_speakers} == set(espeak.ENGLISH_LANGUAGES)


def test_same_seed_gives_identical_bytes_whatever_the_workers(
    corpus: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, _ = corpus
    _generate(tmp_path / "again", num_workers=2)
    assert _files(tmp_path / "again") == _files(root)


def test_second_call_returns_the_cached_corpus(
    corpus: tuple[Path, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, splits = corpus
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def no_synthesis(*args, **kwargs):
        raise AssertionError("the cached corpus was synthesized again")

    monkeypatch.setattr(synthetic.espeak, "synthesize", no_synthesis)
    monkeypatch.setattr(synthetic, "render_all", no_synthesis)
    assert _generate(root) == splits
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_other_parameters_on_an_existing_corpus_raise(corpus: tuple[Path, dict[str, Path]]) -> None:
    root, _ = corpus
    with pytest.raises(ValueError, match="delete"):
        _generate(root, seed=1)
    with pytest.raises(ValueError, match="sample_rate"):
        _generate(root, sample_rate=8000)


def test_a_folder_that_is_not_a_corpus_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a complete synthetic corpus"):
        _generate(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_interrupted_run_leaves_no_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_render(job, root):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(job, root)

    original = synthetic_audio.render
    monkeypatch.setattr(synthetic_audio, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path / "corpus")
    assert list(tmp_path.iterdir()) == []


def test_a_script_without_a_main_guard_gets_a_clear_error_and_no_corpus(tmp_path: Path) -> None:
    """Spawned workers run the calling script again; the user is told to add the guard."""
    import subprocess
    import sys

    script = tmp_path / "make_corpus.py"
    script.write_text("from asr.data.corpora.synthetic import generate\n"
                      f"generate({str(tmp_path / 'corpus')!r}, sizes={{'train': 4, 'dev': 2, 'test': 2}}, "
                      "speakers={'train': 2, 'dev': 1, 'test': 1}, words=['yes', 'no'], num_workers=1, progress=False)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode != 0
    assert "CorpusError" in result.stderr and 'if __name__ == "__main__":' in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["make_corpus.py"], "no corpus, no half-built folder"


def test_invalid_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        _generate(tmp_path / "a", sizes={"validation": 3})
    with pytest.raises(ValueError):
        _generate(tmp_path / "b", words=["two words"])
    with pytest.raises(ValueError):
        _generate(tmp_path / "c", noise_snr_db=(40.0, 20.0))


# --- eSpeak -----------------------------------------------------------------------------------------
def test_synthesize_returns_deterministic_speech_at_22050_hz() -> None:
    audio, rate = espeak.synthesize("the cat sat on the mat", "en-us+m3", 175, 50)
    assert rate == 22050 and audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / rate > 0.5
    assert np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.01
    espeak.synthesize("something else first", "en-gb-x-rp+f3", 140, 70)
    again, _ = espeak.synthesize("the cat sat on the mat", "en-us+m3", 175, 50)
    assert np.array_equal(audio, again)


@pytest.mark.parametrize("voice", ["xx-nolanguage", "en-us+novariant"])
def test_synthesize_rejects_an_unknown_voice(voice: str) -> None:
    with pytest.raises(RuntimeError, match=re.escape(voice)):
        espeak.synthesize("hello", voice, 175, 50)


def test_every_english_language_and_variant_exists() -> None:
    assert all(espeak.variant_exists(v) for v in espeak.SPEECH_VARIANTS)
    for language in espeak.ENGLISH_LANGUAGES:
        audio, _ = espeak.synthesize("good morning", f"{language}+m1", 175, 50)
        assert audio.size > 0


# --- sentences --------------------------------------------------------------------------------------
def test_sentences_are_lower_case_words_of_the_right_length() -> None:
    for text in sentences.sentences(random.Random(1), 2000):
        assert SENTENCE.fullmatch(text), text
        assert sentences.MIN_WORDS <= len(text.split()) <= sentences.MAX_WORDS
        assert set(text.split()) <= set(sentences.VOCABULARY)


def test_every_vocabulary_word_can_appear() -> None:
    seen = {w for text in sentences.sentences(random.Random(0), COVERAGE_SAMPLE) for w in text.split()}
    assert seen == set(sentences.VOCABULARY)
    assert 400 <= len(sentences.VOCABULARY) <= 750


def test_sentences_from_a_word_list() -> None:
    texts = sentences.sentences(random.Random(0), 200, WORDS)
    assert all(2 <= len(t.split()) <= 6 and set(t.split()) <= set(WORDS) for t in texts)
    assert sentences.sentences(random.Random(5), 20, WORDS) == sentences.sentences(random.Random(5), 20, WORDS)
