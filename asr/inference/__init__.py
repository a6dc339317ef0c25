"""Inference wing: audio files of any length, a model file -> transcripts, timed words, WER reports, exports.

In: a training checkpoint or an export of one (``.pt2``, ``.onnx``, ``.ts``) and audio files (any
rate, channels and length). Out: :class:`Transcript` objects (text, words with times and
confidences), written as text, TSV, JSON lines or subtitles; evaluation reports; exported files.

- ``emitters``: a model file -> padded waveforms -> CPU log-probs, in PyTorch or ONNX Runtime.
- ``recognizer``: :class:`Recognizer` and :func:`load`: files -> log-probs (batched by duration,
  long ones in windows: ``windows``) -> text with any decoder; words timed by ``alignment``.
- ``stream``: audio arriving in pieces -> committed words and a partial tail (``Recognizer.stream``),
  many streams stepped as one batch (``step_streams``).
- ``writers``: transcripts -> TSV, JSON lines, SRT, WebVTT. ``evaluate``: test sets -> WER/CER report.
- ``tuning``: the LM weight and word bonus searched on a dev set. ``export``: a checkpoint -> a checked file.
"""

from asr.inference.emitters import open_model
from asr.inference.recognizer import Recognizer, Transcript, load

__all__ = ["Recognizer", "Transcript", "load", "open_model"]
