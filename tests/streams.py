"""Streaming test helpers: speech-like test audio, and a streaming engine fed in random pieces."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from asr.model import AcousticModel, FeatureConfig, ModelConfig
from asr.text import CharTokenizer

RATE = 16_000


def tones(seconds: float, seed: int, rate: int = RATE, noise: float = 0.01) -> np.ndarray:
    """Pairs of tones changing every 0.08-0.4 s, with quiet gaps (float32): varied symbols from a model;
    ``noise``: the deviation of the white noise added to the tones."""
    rng, parts, total = random.Random(seed), [], int(seconds * rate)
    gen = np.random.default_rng(seed)
    while sum(len(p) for p in parts) < total:
        n = int(rng.uniform(0.08, 0.4) * rate)
        t = np.arange(n) / rate
        if rng.random() < 0.3:
            parts.append(gen.standard_normal(n) * 0.002)
        else:
            mix = sum(0.2 * np.sin(2 * math.pi * rng.uniform(100, 4000) * t) for _ in range(2))
            parts.append(mix + gen.standard_normal(n) * noise)
    return np.concatenate(parts)[:total].astype(np.float32)


def tone_tensor(seconds: float, seed: int, rate: int = RATE, noise: float = 0.01) -> torch.Tensor:
    """:func:`tones` as a 1-D float32 tensor."""
    return torch.from_numpy(tones(seconds, seed, rate, noise))


def stream_in_pieces(engine, audio: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Every recording fed to ``engine`` (a StreamingModel or an OnnxStreamingModel) in random pieces
    (1 sample to 0.4 s), all streams stepped together after each round: each one's log-probs, checked
    to come in order."""
    rng = random.Random(seed)
    states = [engine.new_state() for _ in audio]
    got: list[list[torch.Tensor]] = [[] for _ in audio]
    position = [0] * len(audio)
    while not all(s.done for s in states):
        for i, (x, state) in enumerate(zip(audio, states)):
            if position[i] < x.numel():
                piece = rng.choice([1, rng.randint(2, 400), rng.randint(400, 6400)])
                engine.accept(state, x[position[i] : position[i] + piece])
                position[i] += piece
            elif not state.finished:
                engine.finish(state)
        for i, out in enumerate(engine.step(states)):
            assert out.first_frame == sum(len(g) for g in got[i])
            got[i].append(out.log_probs)
    return [torch.cat(g) for g in got]


def babbling_model(hidden_size: int, normalize: str = "global", chunk: float = 0.3,
                   right_context: float = 0.2) -> AcousticModel:
    """Random weights that emit many symbols, blanks and spaces (no trained model is needed to compare
    two decodings of the same log-probs): 2 BiLSTM layers, 40 mels, chunked unless ``chunk`` is 0."""
    torch.manual_seed(0)
    model = AcousticModel(len(CharTokenizer()), FeatureConfig(n_mels=40, normalize=normalize),
                          ModelConfig(rnn_layers=2, hidden_size=hidden_size, chunk=chunk,
                                      right_context=right_context if chunk else 0.0)).eval()
    if normalize == "global":
        model.features.set_global_stats(torch.full((40,), -500.0), torch.full((40,), 3000.0), 100)
    with torch.no_grad():
        model.head.weight.mul_(30)
        model.head.bias[0] += 0.5  # blanks
        model.head.bias[1] += 2.0  # spaces
    return model
