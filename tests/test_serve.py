"""scripts/serve.py as a process on 127.0.0.1: streams end with their file's transcript, many run at
once while another misbehaves and is closed with a reason, the cap refuses one more, /health,
POST /transcribe, and SIGTERM finishes an open stream before the process exits 0."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
websockets = pytest.importorskip("websockets", reason="the server tests need the serve extra")

from tests.serving import RATE, ServerProcess, s16, stream_audio, streaming_checkpoint, tones  # noqa: E402

IDLE = 1.5  # the shared server's --idle-timeout, seconds
MAX_STREAMS = 3
FRAME = 0.1  # seconds of audio per message in these tests
PACE = 0.02  # seconds between messages: 5 x real time


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return streaming_checkpoint(tmp_path_factory.mktemp("serve") / "model.ckpt")


@pytest.fixture(scope="module")
def recognizer(checkpoint):
    import asr

    return asr.load(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(checkpoint):
    with ServerProcess(checkpoint, "--max-streams", str(MAX_STREAMS), "--idle-timeout", str(IDLE)) as srv:
        yield srv


@pytest.fixture(scope="module")
def recordings(tmp_path_factory, recognizer) -> dict[str, tuple[Path, str]]:
    """name -> (WAV file, its transcript by Recognizer.transcribe)."""
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for name, seconds, seed in (("a", 5.0, 1), ("b", 3.0, 2), ("c", 2.5, 3)):
        path = folder / f"{name}.wav"
        sf.write(path, tones(seconds, seed), RATE, subtype="PCM_16")
        out[name] = (path, recognizer.transcribe(path).text)
    return out


def _s16_of(path: Path) -> bytes:
    return sf.read(path, dtype="int16")[0].tobytes()


def _health(server) -> dict:
    with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, data: bytes, content_type: str = "audio/wav") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _good(server, path: Path, rate: int = RATE, fmt: str = "s16"):
    """Stream a file paced at 5 x real time, in 0.1 s frames."""
    if fmt == "s16":
        data, config, frame = _s16_of(path), None, int(FRAME * RATE) * 2
    else:
        data = sf.read(path, dtype="float32")[0].astype("<f4").tobytes()
        config, frame = {"sample_rate": rate, "format": "f32"}, int(FRAME * rate) * 4
    return stream_audio(server.ws_url, data, config, frame, pace=PACE)


def _check_stream(messages: list[dict], code: int, expected: str) -> None:
    assert code == 1000, messages[-1:]
    assert messages[-1] == {"final": True, "text": expected, "seconds": messages[-1]["seconds"]}
    words = [w["word"] for m in messages if "words" in m for w in m["words"]]
    assert " ".join(words) == expected
    updates = [m for m in messages[:-1] if "partial" in m]
    assert updates and all(set(m) <= {"words", "partial", "seconds", "decoded"} for m in updates)
    times = [t for m in updates for w in m.get("words", []) for t in (w["start"], w["end"])]
    assert times == sorted(times)


@pytest.mark.parametrize("rate,fmt", [(RATE, "s16"), (48_000, "f32")])
def test_a_stream_ends_with_the_transcript_of_its_file(server, recognizer, recordings, tmp_path, rate, fmt):
    path, expected = recordings["a"]
    if rate != RATE:  # the same audio as a 48 kHz file: the server resamples as it arrives
        from asr.audio import load_audio, resample

        path = tmp_path / "a48.wav"
        sf.write(path, resample(load_audio(recordings["a"][0], RATE), RATE, rate).numpy(), rate, subtype="FLOAT")
        expected = recognizer.transcribe(path).text
    messages, code, _ = asyncio.run(_good(server, path, rate, fmt))
    _check_stream(messages, code, expected)
    assert len(expected.split()) > 2
    assert any("words" in m for m in messages[:-2]), "words are committed before the end"


def test_a_stream_of_no_audio_ends_with_an_empty_final_message(server):
    messages, code, reason = asyncio.run(stream_audio(server.ws_url, b"", {"sample_rate": 44_100, "format": "f32"}))
    assert code == 1000 and reason == "done" and messages[-1] == {"final": True, "text": "", "seconds": 0.0}


async def _misbehave(ws_url: str, fault: str) -> tuple[int | None, str, list[dict]]:
    """One client doing ``fault``; the server's close code, reason and messages."""
    async with websockets.connect(ws_url) as ws:
        frame = s16(tones(0.5, 9))
        if fault == "not json":
            await ws.send("hello")
        elif fault.startswith("sample rate"):
            await ws.send(json.dumps({"sample_rate": json.loads(fault.split()[-1]), "format": "s16"}))
        elif fault == "odd byte count":
            await ws.send(frame[:3])
        elif fault == "config after audio":
            await ws.send(frame)
            await ws.send(json.dumps({"sample_rate": 48000}))
        elif fault == "idle":
            await ws.send(json.dumps({"sample_rate": RATE}))
            await ws.send(frame)
        elif fault == "disconnect":
            await ws.send(frame)
            await asyncio.sleep(0.3)
            ws.transport.abort()  # no close frame: the TCP connection just ends
            return None, "", []
        messages = []
        try:
            async for m in ws:
                messages.append(json.loads(m))
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, messages


FAULTS = {  # fault -> (close code, words of the reason)
    "not json": (1003, "JSON"),
    "sample rate 0": (1008, "sample_rate 0"),
    "sample rate -16000": (1008, "sample_rate -16000"),
    "sample rate 1000000000": (1008, "unsupported"),
    "sample rate 44100.5": (1008, "unsupported"),
    "odd byte count": (1003, "3 bytes"),
    "config after audio": (1008, "before any audio"),
    "idle": (1008, f"no message for {IDLE:g} s"),
    "disconnect": (None, ""),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_two_streams_go_on_while_a_third_misbehaves_and_is_closed_with_a_reason(server, recordings, fault):
    async def run():
        return await asyncio.gather(_good(server, recordings["b"][0]), _good(server, recordings["c"][0]),
                                    _misbehave(server.ws_url, fault))

    (b, b_code, _), (c, c_code, _), (code, reason, messages) = asyncio.run(run())
    _check_stream(b, b_code, recordings["b"][1])
    _check_stream(c, c_code, recordings["c"][1])
    want_code, want_reason = FAULTS[fault]
    assert code == want_code and want_reason in reason, (code, reason)
    if want_code:
        assert messages[-1] == {"error": reason, "code": code}
    _wait_for_free_slots(server)


def _wait_for_free_slots(server) -> None:
    import time

    deadline = time.monotonic() + 10
    while _health(server)["streams"]["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _health(server)["streams"]["active"] == 0


def test_one_stream_more_than_max_streams_is_refused_with_a_reason(server, recordings):
    async def run():
        holders = [await websockets.connect(server.ws_url) for _ in range(MAX_STREAMS)]
        for ws in holders:
            await ws.send(s16(tones(0.2, 5)))
        await asyncio.sleep(0.2)
        status, body = await asyncio.to_thread(_post, server.url + "/transcribe", recordings["b"][0].read_bytes())
        refused = await websockets.connect(server.ws_url)
        try:
            error = json.loads(await refused.recv())
            await refused.recv()
        except websockets.ConnectionClosed as closed:
            code, reason = closed.rcvd.code, closed.rcvd.reason
        for ws in holders:
            await ws.send(json.dumps({"eof": True}))
            async for m in ws:
                last = json.loads(m)
            assert last["final"]
        return status, body, error, code, reason

    status, body, error, code, reason = asyncio.run(run())
    assert code == 1013 and f"all {MAX_STREAMS} streams in use" in reason and error["error"] == reason
    assert status == 503 and "server busy" in body["error"]
    _wait_for_free_slots(server)
    messages, code, _ = asyncio.run(_good(server, recordings["c"][0]))
    _check_stream(messages, code, recordings["c"][1])


def test_health_says_the_model_the_streams_and_the_latency(server):
    health = _health(server)
    assert health["status"] == "ok" and health["model"] == "model.ckpt"
    assert health["streams"] == {"active": 0, "max": MAX_STREAMS}
    assert health["sample_rate"] == RATE and health["chunk"] == pytest.approx(0.3, abs=0.02)
    assert health["latency"] > health["chunk"]


def test_post_transcribe_gives_the_files_transcript_with_words(server, recordings, recognizer):
    path, expected = recordings["a"]
    status, body = _post(server.url + "/transcribe", path.read_bytes())
    words = recognizer.transcribe(path, words=True).words
    assert status == 200 and body["text"] == expected and body["duration"] == pytest.approx(5.0)
    assert [w["word"] for w in body["words"]] == [w.word for w in words]
    assert body["words"][0]["start"] == pytest.approx(words[0].start, abs=1e-3)
    boundary = "asrboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, body = _post(server.url + "/transcribe", form, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and body["text"] == expected
    status, body = _post(server.url + "/transcribe", b"not audio at all")
    assert status == 400 and "not readable audio" in body["error"]


def test_the_web_page_and_its_scripts_are_served(server):
    for path, marker in (("/", b"Live transcription"), ("/static/app.js", b"WebSocket"),
                         ("/static/recorder-worklet.js", b"registerProcessor")):
        with urllib.request.urlopen(server.url + path, timeout=10) as r:
            assert r.status == 200 and marker in r.read()


def test_sigterm_finishes_an_open_stream_then_exits_0(checkpoint, recordings):
    path, _ = recordings["b"]
    audio = _s16_of(path)[: 2 * RATE * 2]  # 2 s, no eof from the client
    sent = tmp_wav = path.with_name("sent.wav")
    sf.write(tmp_wav, np.frombuffer(audio, "<i2"), RATE, subtype="PCM_16")
    import asr

    expected = asr.load(checkpoint, device="cpu").transcribe(sent).text
    with ServerProcess(checkpoint) as srv:
        async def run():
            async with websockets.connect(srv.ws_url) as ws:
                await ws.send(audio)
                first = json.loads(await ws.recv())  # the server has the audio
                srv.signal(signal.SIGTERM)
                messages = [first] + [json.loads(m) async for m in ws]
                return messages, ws.close_code

        messages, code = asyncio.run(run())
        assert code == 1000 and messages[-1]["final"] and messages[-1]["text"] == expected
        assert srv.wait(30) == 0, srv.output
