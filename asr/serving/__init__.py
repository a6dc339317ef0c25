"""Serving: a recognizer behind a WebSocket and HTTP server (``scripts/serve.py``, ``asr-serve``).

In: client messages on ``/stream`` (a JSON config, binary PCM frames, ``{"eof": true}``) and audio
files posted to ``/transcribe``. Out: JSON messages of committed words, partial text, line ends and
a final transcript per stream (:mod:`asr.serving.protocol` parses and words them); JSON transcripts
of files. One inference thread steps every stream with new audio as one batch
(:mod:`asr.serving.engine`); the FastAPI app (:mod:`asr.serving.app`) only parses and enqueues, and
serves the web page in ``static/`` that records the microphone and shows the text live.
"""
