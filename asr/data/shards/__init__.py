"""Sharded training data: utterances packed into tar shards, read from local disk, HTTP or object storage.

In: a folder or URL prefix that ``scripts/shard.py`` wrote (tar shards + ``index.json`` + ``index.npz``).
Out: the same :class:`~asr.data.dataset.Example` items and batches as files give, planned from the
index alone (durations, byte spans), so bucketing, equal steps per rank and exact resume need no
pass over the audio.

- ``layout``: the on-disk format (WebDataset members ``<key>.json`` + ``<key>.flac``, the index, NeMo's
  tarred manifest) and :class:`ShardIndex`, the compact per-utterance arrays.
- ``writer``: manifests, NeMo and Lhotse manifests, LibriSpeech folders -> shards, in parallel, resumable.
- ``remote``: paths, globs, brace ranges and URLs through fsspec; bounded retries; the local shard cache.
- ``sampler``: the epoch's batch plan: shards -> (rank, worker) streams -> duration buckets -> batches,
  every utterance once, the same number of batches on every rank and worker.
- ``dataset``: a global utterance index -> its example, read from the cached or local shard.
"""
