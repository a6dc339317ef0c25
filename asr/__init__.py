"""asr: BiLSTM-CTC speech recognition, trained with PyTorch Lightning and Hydra.

    import asr
    recognizer = asr.load("model.ckpt")
    print(recognizer.transcribe("speech.flac").text)
    beam = asr.load("model.ckpt", options=asr.DecodeOptions("beam", lm="lm.arpa"))
    fast = asr.load("model.int8.onnx", threads=2)   # an export (scripts/export.py): TorchScript or ONNX
"""

from asr.decoding import DecodeOptions
from asr.transcribe import Recognizer, Transcript, load

__version__ = "0.1.0"
__all__ = ["DecodeOptions", "Recognizer", "Transcript", "load", "__version__"]
