"""DataModule: a corpus's manifests -> training, validation and test DataLoaders.

Workers only read and resample audio (``AudioDataset``); features are computed on the model's
device. Training batches come from ``DurationBatchSampler`` (padded-seconds budget, length
buckets, DDP sharding from the trainer's rank and world size); evaluation batches are formed the
same way without shuffling. Validation joins all ``val_splits`` into one set; each test split
gets its own DataLoader, named in ``test_names``.

Resuming mid-epoch: a checkpoint stores the sampler's epoch and how many of its batches the
training loop has *consumed* (Lightning's batch progress, not what the DataLoader has already
prefetched); the restored sampler skips those, while the loader still reports the whole epoch's
length, which is what Lightning's restored batch counters expect. DataLoaders draw their worker
seeds from their own generators, never from the global RNG, so checkpointed RNG states
(``asr.training.callbacks.RandomState``) continue exactly. Workers ignore the preemption signals
(SIGTERM, SIGUSR1, SIGUSR2): a scheduler that signals the whole process group leaves them running
while the training process writes its checkpoint (``asr.training.preemption``).
"""

from __future__ import annotations

import logging
import random
import signal
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from asr.data.batching import Batch, Collate, DurationBatchSampler
from asr.data.corpora.base import Corpus, CorpusError
from asr.data.dataset import AudioDataset, prepare_utterances
from asr.data.manifest import read_manifest
from asr.data.shards.dataset import ShardDataset
from asr.data.shards.remote import ShardSet
from asr.data.shards.sampler import ShardBatchSampler
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

_SEED_STRIDE = 1_000_003  # DataLoader generator seed = seed * stride + (epoch + 1 for training, 0 for evaluation)
PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")  # left to the training process
STATS_BATCH = 32  # utterances per batch of sample_batches


def _worker_init(worker_id: int) -> None:
    """In each DataLoader worker: ignore the signals the training process acts on."""
    for name in PREEMPTION_SIGNALS:
        signal.signal(signal.Signals[name], signal.SIG_IGN)


def check_data_options(batch_seconds: float = 1.0, eval_batch_seconds: float | None = None, num_buckets: int = 1,
                       max_batch_size: int | None = None, num_workers: int = 0, min_duration: float = 0.0,
                       max_duration: float = 1.0, speeds: Sequence[float] = (1.0,), sortagrad_epochs: int = 0,
                       train_splits: Sequence[str] = ("train",), val_splits: Sequence[str] = ("dev",),
                       test_splits: Sequence[str] = ("test",), **_: Any) -> None:
    """Raise ValueError (``<option>=<value>: what is allowed``) for options that cannot work."""
    for name, value in (("batch_seconds", batch_seconds), ("eval_batch_seconds", eval_batch_seconds),
                        ("max_duration", max_duration)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value}: must be a positive number of seconds")
    for name, value, low in (("num_buckets", num_buckets, 1), ("max_batch_size", max_batch_size, 1),
                             ("num_workers", num_workers, 0), ("sortagrad_epochs", sortagrad_epochs, 0)):
        if value is not None and value < low:
            raise ValueError(f"{name}={value}: must be at least {low}")
    if not 0 <= min_duration < max_duration:
        raise ValueError(f"min_duration={min_duration}: must be >= 0 and below max_duration={max_duration}")
    if not speeds or any(not s > 0 for s in speeds):
        raise ValueError(f"speeds={list(speeds)}: must be a non-empty list of positive factors ([1.0]: none)")
    for name, splits in (("train_splits", train_splits), ("val_splits", val_splits)):
        if not splits:
            raise ValueError(f"{name}=[]: name at least one split of the corpus")


class ASRDataModule(L.LightningDataModule):
    """Args are ``data.*`` of the config (``asr/conf/data/*.yaml`` override these defaults, the one
    home of them: asr.config derives the data schema from this signature); seconds throughout."""

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: CharTokenizer,
        sample_rate: int,
        train_splits: Sequence[str] = ("train",),
        val_splits: Sequence[str] = ("dev",),
        test_splits: Sequence[str] = ("test",),
        batch_seconds: float = 200.0,  # padded audio seconds per training batch (per device)
        eval_batch_seconds: float | None = None,  # per evaluation batch; None = batch_seconds
        num_buckets: int = 20,  # duration buckets; more buckets, less padding
        max_batch_size: int | None = None,  # utterances per batch at most; None = no limit
        num_workers: int = 2,  # DataLoader processes reading audio (0: in the training process)
        min_duration: float = 0.2,  # seconds; training utterances outside [min, max] are left out
        max_duration: float = 30.0,
        speeds: Sequence[float] = (1.0,),  # speed perturbation factors, one drawn per utterance and epoch
        sortagrad_epochs: int = 0,  # epochs that go from short to long utterances before shuffling
        shard_window: int = 4,  # shards a reader buckets together (data=shards; asr.data.shards.sampler)
        seed: int = 0,
        pin_memory: bool | None = None,  # page-locked batches for fast GPU copies; None: when training on CUDA
        output_frame_rate: float | None = None,
    ) -> None:
        check_data_options(batch_seconds=batch_seconds, eval_batch_seconds=eval_batch_seconds, num_buckets=num_buckets,
                           max_batch_size=max_batch_size, num_workers=num_workers, min_duration=min_duration,
                           max_duration=max_duration, speeds=speeds, sortagrad_epochs=sortagrad_epochs,
                           train_splits=train_splits, val_splits=val_splits, test_splits=test_splits)
        super().__init__()
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.train_splits, self.val_splits, self.test_splits = list(train_splits), list(val_splits), list(test_splits)
        self.batch_seconds = batch_seconds
        self.eval_batch_seconds = eval_batch_seconds or batch_seconds
        self.num_buckets = num_buckets
        self.max_batch_size = max_batch_size
        self.num_workers = num_workers
        self.min_duration, self.max_duration = min_duration, max_duration
        self.speeds = tuple(speeds)
        self.sortagrad_epochs = sortagrad_epochs
        self.shard_window = shard_window
        self.seed = seed
        self.pin_memory = pin_memory
        self.output_frame_rate = output_frame_rate
        self.datasets: dict[str, AudioDataset] = {}
        self.train_sampler: DurationBatchSampler | None = None
        self._sampler_state: dict[str, int] | None = None

    @property
    def test_names(self) -> list[str]:
        return list(self.test_splits)

    def prepare_data(self) -> None:
        self.corpus.prepare()

    def setup(self, stage: str | None = None) -> None:
        sources = self.corpus.sources() if hasattr(self.corpus, "sources") else self.corpus.manifests()
        wanted = {"fit": self.train_splits + self.val_splits, "validate": self.val_splits,
                  "test": self.test_splits}.get(stage or "", self.train_splits + self.val_splits + self.test_splits)
        unknown = [s for s in wanted if s not in sources]
        if unknown:
            raise CorpusError(f"split(s) {unknown} are not in the corpus, which has {sorted(sources)}")
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split, sources[split], training=split in self.train_splits)

    def _dataset(self, split: str, source: Any, training: bool) -> AudioDataset | ShardDataset:
        if isinstance(source, ShardSet):
            return self._shard_dataset(split, source, training)
        utterances = read_manifest(source)
        if training:
            utterances, _ = prepare_utterances(utterances, self.tokenizer, self.min_duration, self.max_duration,
                                               self.output_frame_rate, name=split)
        else:  # evaluation keeps every utterance the tokenizer can score, whatever its length
            utterances, _ = prepare_utterances(utterances, self.tokenizer, name=split)
        return AudioDataset(utterances, self.tokenizer, self.sample_rate, self.speeds if training else (1.0,))

    def _shard_dataset(self, split: str, shards: ShardSet, training: bool) -> ShardDataset:
        """Shards: the durations are screened here, from the index; characters and CTC lengths as
        each utterance is read (its text is in its shard)."""
        dataset = ShardDataset(shards, self.tokenizer, self.sample_rate, self.speeds if training else (1.0,),
                               self.output_frame_rate if training else None)
        durations = shards.index.duration
        dataset.keep = ((durations >= self.min_duration) & (durations <= self.max_duration) if training
                        else np.ones(len(durations), dtype=bool))
        dropped = int((~dataset.keep).sum())
        (log.warning if dropped else log.info)("%s: %d utterances in %d shard(s), %.1f h%s", split, int(dataset.keep.sum()),
                                               len(shards.index.shards), shards.index.hours,
                                               f"; {dropped} outside [{self.min_duration}, {self.max_duration}] s left out"
                                               if dropped else "")
        return dataset

    def _joined(self, splits: Sequence[str]) -> AudioDataset | ShardDataset:
        if len(splits) == 1:
            return self.datasets[splits[0]]
        parts = [self.datasets[s] for s in splits]
        if any(isinstance(p, ShardDataset) for p in parts):
            raise CorpusError(f"splits {', '.join(splits)}: a shard set cannot be joined with other splits; write them "
                              "into one set of shards (scripts/shard.py takes several inputs)")
        return AudioDataset([u for p in parts for u in p.utterances], self.tokenizer, self.sample_rate, parts[0].speeds)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: AudioDataset, sampler: Sampler, seed: int = 0) -> DataLoader:
        # Worker seeds come from this generator, not the global RNG (see the module docstring).
        generator = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + seed)
        pin = self.pin_memory
        if pin is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else None
            pin = device is not None and device.type == "cuda"
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=Collate(self.sample_rate),
                          num_workers=self.num_workers, pin_memory=pin, worker_init_fn=_worker_init,
                          persistent_workers=self.num_workers > 0, generator=generator)

    def train_dataloader(self) -> DataLoader:
        dataset = self._joined(self.train_splits)
        rank, world = self._rank_world()
        self.train_sampler = self._sampler(dataset, self.batch_seconds, shuffle=True, rank=rank, world=world)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        batches = _ResumableBatches(self.train_sampler, self)
        batches.set_epoch(epoch)  # so that len() counts this epoch's batches
        return self._loader(dataset, batches, seed=epoch + 1)

    def _sampler(self, dataset: AudioDataset | ShardDataset, budget: float, shuffle: bool, rank: int,
                 world: int) -> DurationBatchSampler | ShardBatchSampler:
        if isinstance(dataset, ShardDataset):
            return ShardBatchSampler(dataset.shards.index, budget, shuffle=shuffle, seed=self.seed,
                                     num_replicas=world, rank=rank, num_workers=self.num_workers,
                                     window_shards=self.shard_window, sortagrad_epochs=self.sortagrad_epochs if shuffle
                                     else 0, max_batch_size=self.max_batch_size, keep=dataset.keep)
        return DurationBatchSampler(dataset.durations, budget, self.num_buckets, shuffle=shuffle, seed=self.seed,
                                    num_replicas=world, rank=rank, sortagrad_epochs=self.sortagrad_epochs if shuffle
                                    else 0, max_batch_size=self.max_batch_size)

    def _eval_loader(self, dataset: AudioDataset | ShardDataset) -> DataLoader:
        rank, world = self._rank_world()
        return self._loader(dataset, self._sampler(dataset, self.eval_batch_seconds, shuffle=False, rank=rank,
                                                   world=world))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._joined(self.val_splits))

    def sample_batches(self, count: int, batch_size: int = STATS_BATCH) -> Iterator[Batch]:
        """Batches of ``count`` training utterances, the same on every rank and in every run (for
        statistics measured before training: ``features.normalize=global``). From files, a seeded
        random sample; from shards, the first shards' utterances (a remote set fetches only those).
        Unreadable items are left out. Read in this process; the training loader is not touched."""
        dataset = self._joined(self.train_splits)
        if isinstance(dataset, ShardDataset):
            chosen = np.flatnonzero(dataset.keep)[:count].tolist()  # the index is grouped by shard
        else:
            chosen = sorted(random.Random(self.seed).sample(range(len(dataset)), min(count, len(dataset))))
        collate = Collate(self.sample_rate)
        for first in range(0, len(chosen), batch_size):
            batch = collate([dataset[i] for i in chosen[first:first + batch_size]])
            if batch is not None:
                yield batch

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.datasets[s]) for s in self.test_splits]

    def state_dict(self) -> dict[str, Any]:
        if self.train_sampler is None:
            return {}
        state = self.train_sampler.state_dict()
        if self.trainer is not None:
            # Batches of this epoch the loop has trained on; resuming redoes a batch that was
            # fetched but not finished, exactly as Lightning's restored progress counters do.
            state["skip"] = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"sampler": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sampler_state = state.get("sampler")


class _ResumableBatches(Sampler[list[int]]):
    """The training batch sampler as Lightning sees it. When Lightning starts the epoch a restored
    checkpoint was saved in (``set_epoch``), the sampler skips the batches already trained on;
    ``len`` stays the whole epoch's, which Lightning's restored batch counters expect."""

    def __init__(self, batches: DurationBatchSampler, datamodule: ASRDataModule) -> None:
        self.batches = batches
        self.datamodule = datamodule

    @property
    def sampler(self) -> _ResumableBatches:  # Lightning calls dataloader.batch_sampler.sampler.set_epoch()
        return self

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)
        state = self.datamodule._sampler_state
        if state is not None and state["epoch"] <= epoch:
            if state["epoch"] == epoch:
                self.batches.load_state_dict(state)
            self.datamodule._sampler_state = None  # applied, or its epoch is over

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches) + self.batches.skip + self.batches.resumed_at
