"""Data wing: corpora on disk -> manifests -> batches of waveforms and targets for training.

In: audio files and transcripts (a corpus folder, an archive to download, or JSON-lines manifests).
Out: :class:`~asr.data.batching.Batch` objects: waveforms ``(batch, samples)`` float32 at the model's
sample rate with their lengths, CTC targets and texts; unreadable files are skipped and counted.

- ``manifest``: JSON-lines manifests (one utterance per line), read, written and built from folders.
- ``dataset``: an utterance -> its waveform and targets; ``batching``: the duration-bucketed,
  DDP-aware sampler that resumes mid-epoch exactly; ``datamodule``: the DataLoaders.
- ``download``: resumable, checked downloads and extraction; ``corpora``: the built-in synthetic
  corpus, LibriSpeech, Mini LibriSpeech, AN4 and any manifest corpus.
"""
