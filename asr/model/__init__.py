"""Model wing: padded waveforms -> CTC log-probs over the tokenizer's symbols, features inside.

In: waveforms ``(batch, samples)`` float32 at ``FeatureConfig.sample_rate`` and their lengths
``(batch,)`` int64. Out: log-probs ``(batch, frames, vocab)`` float32 and frame lengths ``(batch,)``
int64, at ``output_frame_rate`` frames per second. Padding never changes an utterance's output.

- ``features``: log-mel filterbanks, normalization (per utterance or global) and SpecAugment (on the model's device).
- ``lstm``: the bidirectional LSTM stacks (split per direction, or packed ``nn.LSTM``).
- ``chunked``: the split stack read in chunks with a right context (latency-controlled BiLSTM).
- ``acoustic``: :class:`AcousticModel` = features -> convolutional subsampling -> BiLSTM -> log-probs.
- ``streaming``: audio in pieces, many streams at once -> the log-probs of the frames that are final.
- ``checkpoint``: a training checkpoint -> the model and its tokenizer (:func:`load_checkpoint`).
"""

from asr.model.acoustic import AcousticModel, ConvLayer, ModelConfig
from asr.model.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from asr.model.features import FeatureConfig, LogMel, SpecAugment, SpecAugmentConfig

__all__ = ["AcousticModel", "CheckpointError", "ConvLayer", "FeatureConfig", "LoadedCheckpoint", "LogMel", "ModelConfig",
           "SpecAugment", "SpecAugmentConfig", "load_checkpoint"]
