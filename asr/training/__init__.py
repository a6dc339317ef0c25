"""Training wing: a composed Hydra config -> a run folder with checkpoints, logs and test results.

In: the config of ``asr/conf`` (``scripts/train.py`` composes it), a corpus (:mod:`asr.data`) and the
acoustic model (:mod:`asr.model`). Out: ``runs/<name>/<date>_<time>/`` with the resolved config,
kill-safe checkpoints that rebuild the model alone, metrics and the test WER/CER.

- ``config``: the run's schema and every check, one line per bad value, before anything is built.
- ``train``: config -> objects -> ``trainer.fit`` -> ``trainer.test``; resuming and fine-tuning.
- ``module``: the LightningModule: CTC loss, greedy validation WER/CER (:mod:`asr.decoding`), optimizer.
- ``optim``: AdamW/SGD and the warm-up + cosine schedule. ``callbacks``: throughput, preemption,
  random states, sample transcripts. ``loggers``: W&B, CSV. ``checkpoints``: atomic writes, resume, init_from.

Importing this package imports Lightning; the model and inference wings do not.
"""
