import inspect
from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from asr.data.corpora.synthetic import SyntheticCorpus
from asr.data.datamodule import ASRDataModule
from asr.decoding.options import DecodeOptions, load_options
from asr.model.acoustic import ModelConfig
from asr.model.features import FeatureConfig, SpecAugmentConfig
from asr.training.optim import OptimConfig
from asr.training.train import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_tokenizer,
    build_trainer,
)
from tests.conftest import CONF, compose_config

RECIPES = sorted(p.stem for p in (CONF / "recipe").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_and_builds(recipe, tmp_path):
    cfg = compose_config(f"recipe={recipe}", f"paths.data_dir={tmp_path}")
    tokenizer = build_tokenizer(cfg.text)
    model = build_model(cfg, len(tokenizer))
    datamodule = build_datamodule(cfg.data, tokenizer, model, cfg.seed)
    assert datamodule.test_names
    callbacks = build_callbacks(cfg.callbacks, tmp_path)
    assert callbacks
    build_trainer(cfg, tmp_path, callbacks, [])  # the recipe's trainer settings are ones Lightning accepts
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("group,option,cls", [("features", "logmel80", FeatureConfig),
                                              ("specaugment", "default", SpecAugmentConfig),
                                              ("model", "small", ModelConfig), ("optim", "adamw", OptimConfig)])
def test_the_python_defaults_are_the_cli_defaults(group, option, cls):
    """The Python API and the CLI start from the same defaults: the group's default file overrides
    nothing, so composing it gives the dataclass's defaults, and every file's values are its fields."""
    cfg = compose_config("~recipe", f"{group}={option}")  # the group alone, no recipe overlay
    assert OmegaConf.to_object(cfg[group]) == cls()
    for path in (CONF / group).glob("*.yaml"):
        unknown = set(OmegaConf.load(path) or {}) - {f.name for f in fields(cls)}
        assert not unknown, f"{path} sets {unknown}, which {cls.__name__} does not have"


def test_data_and_corpus_defaults_come_from_their_constructors():
    """asr/conf/data/*.yaml override the signatures of ASRDataModule and the corpus classes."""
    cfg = compose_config("data=manifest", "data.corpus.splits.train=a", "data.corpus.splits.dev=b",
                         "data.corpus.splits.test=c")
    params = inspect.signature(ASRDataModule.__init__).parameters
    for key in ("batch_seconds", "num_buckets", "num_workers", "min_duration", "max_duration", "sortagrad_epochs"):
        assert cfg.data[key] == params[key].default, key
    synthetic = compose_config().data.corpus
    params = inspect.signature(SyntheticCorpus.__init__).parameters
    assert dict(synthetic.sizes) == dict(params["sizes"].default)
    assert dict(synthetic.speakers) == dict(params["speakers"].default)
    assert synthetic.seed == params["seed"].default and synthetic.words is None


def test_decode_files_are_decode_options():
    for path in (CONF / "decode").glob("*.yaml"):
        load_options(path)  # every key is an option, every value of its type
    assert load_options(CONF / "decode" / "beam.yaml") == DecodeOptions(decoder="beam")


def test_loggers_build_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("logger=auto")
    names = sorted(type(lg).__name__ for lg in build_loggers(cfg.logger, tmp_path))
    assert names == ["CSVLogger", "WandbLogger"]
