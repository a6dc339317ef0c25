import random
from collections import Counter

import pytest
import torch

from asr.data.batching import Collate, DurationBatchSampler
from asr.data.dataset import Example, Skipped


def _durations(n=500, seed=0):
    rng = random.Random(seed)
    return [rng.uniform(0.5, 20.0) for _ in range(n)]


@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize("epoch", [0, 1])
def test_every_utterance_exactly_once_per_epoch(replicas, epoch):
    durations = _durations()
    seen = Counter()
    lengths = []
    for rank in range(replicas):
        s = DurationBatchSampler(durations, 60.0, num_buckets=10, seed=7, num_replicas=replicas, rank=rank)
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        lengths.append(len(batches))
        for b in batches:
            seen.update(b)
    assert sorted(seen) == list(range(len(durations)))
    assert set(seen.values()) == {1}
    assert len(set(lengths)) == 1, "every rank must run the same number of steps"


def test_budget_of_padded_seconds_is_respected():
    durations = _durations()
    for batch in DurationBatchSampler(durations, 60.0, num_buckets=10):
        longest = max(durations[i] for i in batch)
        assert longest * len(batch) <= 60.0 or len(batch) == 1


def test_buckets_keep_padding_low():
    durations = _durations(2000)
    padded = real = 0.0
    for batch in DurationBatchSampler(durations, 200.0, num_buckets=40):
        padded += max(durations[i] for i in batch) * len(batch)
        real += sum(durations[i] for i in batch)
    assert 1 - real / padded < 0.05


def test_epochs_differ_but_are_reproducible():
    durations = _durations()
    a = DurationBatchSampler(durations, 60.0, seed=1)
    b = DurationBatchSampler(durations, 60.0, seed=1)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    assert list(a) != first


def test_sortagrad_goes_short_to_long_then_shuffles():
    durations = _durations()
    s = DurationBatchSampler(durations, 60.0, sortagrad_epochs=1)
    longest = [max(durations[i] for i in b) for b in s]
    assert longest == sorted(longest)
    s.set_epoch(1)
    longest = [max(durations[i] for i in b) for b in s]
    assert longest != sorted(longest)


def test_resume_skips_batches_already_trained():
    durations = _durations()
    s = DurationBatchSampler(durations, 60.0, seed=3)
    s.set_epoch(2)
    full = list(s)
    t = DurationBatchSampler(durations, 60.0, seed=3)
    t.load_state_dict({"epoch": 2, "skip": 5})
    t.set_epoch(2)
    assert list(t) == full[5:] and len(t) == len(full) - 5
    t.set_epoch(3)  # a new epoch starts from its first batch
    assert len(list(t)) == len(t) and t.skip == 0


def test_tiny_dataset_with_more_replicas_than_batches_still_balances():
    s0 = DurationBatchSampler([1.0], 60.0, num_replicas=2, rank=0)
    s1 = DurationBatchSampler([1.0], 60.0, num_replicas=2, rank=1)
    assert len(list(s0)) == len(list(s1)) == 1


def test_collate_pads_and_drops_unreadable_items():
    examples = [
        Example(0, torch.ones(5), torch.tensor([3, 4]), "ab"),
        Skipped(1, "/x/bad.flac", "empty file"),
        Example(2, torch.ones(3), torch.tensor([5]), "c"),
    ]
    batch = Collate(16000)(examples)
    assert batch.waveforms.shape == (2, 5)
    assert batch.lengths.tolist() == [5, 3] and batch.target_lengths.tolist() == [2, 1]
    assert batch.waveforms[1, 3:].abs().sum() == 0
    assert batch.targets.tolist() == [[3, 4], [5, 0]]
    assert [s.path for s in batch.skipped] == ["/x/bad.flac"]
    assert batch.audio_seconds == pytest.approx(8 / 16000)
    assert Collate(16000)([Skipped(0, "a", "b")]) is None
