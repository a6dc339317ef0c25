"""The server's web page in a real browser: headless Chromium (Debian's package, driven by Playwright)
records a fake microphone that plays a WAV file through the page's AudioWorklet, streams it at the
browser's own rate, and shows live words with their times and the final transcript.

The page's final text is compared with the server's transcript of the audio it received (``--record``),
decoded as a whole file: the browser captures and resamples the file (and starts recording at a moment
of its own), so what reaches the server is not the WAV's samples and its text may differ from the WAV's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.serving import RATE, ServerProcess, streaming_checkpoint, tones

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("chromium not installed: apt-get install chromium", allow_module_level=True)
pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")

PAD = 1.0  # seconds of silence before and after the utterance
SPEECH = 4.0
WAV_RATE = 48_000  # the browser's capture rate: the fake device plays the file as it is
TIMEOUT_MS = 60_000
# Streams split a word at an endpoint (a pause of 1 s), a file's decoding only at a word pause: with a
# word pause of at most the endpoint both split alike (asr.inference.stream), so the texts compare.
WORD_PAUSE = 0.3


def _utterance(path: Path) -> Path:
    from asr.audio import resample

    import torch

    speech = resample(torch.from_numpy(tones(SPEECH, 11)), RATE, WAV_RATE).numpy()
    silence = np.zeros(int(PAD * WAV_RATE), np.float32)
    sf.write(path, np.concatenate([silence, speech, silence]), WAV_RATE, subtype="PCM_16")
    return path


def test_the_page_transcribes_the_microphone_live_and_shows_the_final_text(tmp_path):
    import asr

    checkpoint = streaming_checkpoint(tmp_path / "model.ckpt")
    wav = _utterance(tmp_path / "utterance.wav")
    recorded = tmp_path / "recorded"
    args = ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required"]
    serving = ServerProcess(checkpoint, "--record", str(recorded), "--word-pause", str(WORD_PAUSE))
    with serving as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(server.url + "/")
            page.click("#start")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('listening')",
                                   timeout=TIMEOUT_MS)
            # live: words show up while the file plays, each with its times and confidence
            page.wait_for_selector(".word", timeout=TIMEOUT_MS)
            title = page.get_attribute(".word", "title")
            page.wait_for_timeout(int((2 * PAD + SPEECH) * 1000))
            page.click("#stop")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('done')",
                                   timeout=TIMEOUT_MS)
            final = page.text_content("#final")
            shown = " ".join(page.eval_on_selector_all(".word", "spans => spans.map(s => s.textContent)"))
        finally:
            browser.close()
    assert "s, confidence" in title and "–" in title, title
    files = sorted(recorded.glob("*.wav"))
    assert len(files) == 1, (files, server.output, console)
    received, rate = sf.read(files[0])
    assert rate in (44_100, 48_000) and len(received) / rate > SPEECH, (rate, len(received))
    recognizer = asr.load(checkpoint, device="cpu", options=asr.DecodeOptions(word_pause=WORD_PAUSE))
    expected = recognizer.transcribe(files[0]).text
    assert final and final == expected == shown, (final, expected, shown)
    print(f"page: {final!r}; the WAV itself: {recognizer.transcribe(wav).text!r}")
