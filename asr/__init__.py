"""asr: BiLSTM-CTC speech recognition, trained with PyTorch Lightning and Hydra.

    import asr
    recognizer = asr.load("model.ckpt")
    print(recognizer.transcribe("speech.flac").text)
    beam = asr.load("model.ckpt", options=asr.DecodeOptions("beam", lm="lm.arpa"))
    fast = asr.load("model.int8.onnx", threads=2)   # an export (scripts/export.py): .pt2, ONNX or int8 TorchScript

The package's folders follow the data: ``data`` (corpora -> batches), ``model`` (waveforms ->
features -> log-probs), ``decoding`` (log-probs -> text), ``training`` (CTC loss, Lightning,
checkpoints), ``inference`` (files of any length -> transcripts; export), ``cli`` (one module per
command); ``audio``, ``text``, ``metrics``, ``files``, ``memory``, ``report`` and ``config`` serve them
all.
A wing imports only from the shared modules and the wings before it in that order.
"""

from asr import _moved
from asr.decoding.options import DecodeOptions
from asr.inference.recognizer import Recognizer, Transcript, load

__version__ = "0.1.0"
__all__ = ["DecodeOptions", "Recognizer", "Transcript", "load", "__version__"]

_moved.install()  # asr 0.1's import paths (asr.features, asr.emitters, ...) still work
