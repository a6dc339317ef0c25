import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from asr.features import FeatureConfig, SpecAugmentConfig
from asr.model import ModelConfig
from asr.optim import OptimConfig
from asr.train import build_callbacks, build_datamodule, build_loggers, build_model, build_tokenizer
from tests.conftest import CONF, ROOT, compose_config

RECIPES = sorted(p.stem for p in (CONF / "recipe").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_and_builds(recipe, tmp_path):
    cfg = compose_config(f"recipe={recipe}", f"paths.data_dir={tmp_path}")
    tokenizer = build_tokenizer(cfg.text)
    model = build_model(cfg, len(tokenizer))
    datamodule = build_datamodule(cfg.data, tokenizer, model, cfg.seed)
    assert datamodule.test_names
    assert build_callbacks(cfg.callbacks, tmp_path)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("group,cls", [("features", FeatureConfig), ("specaugment", SpecAugmentConfig),
                                       ("optim", OptimConfig)])
def test_group_files_set_every_field_of_their_dataclass(group, cls):
    for path in (CONF / group).glob("*.yaml"):
        keys = set(OmegaConf.load(path))
        assert keys == {f.name for f in fields(cls)}, f"{path} and {cls.__name__} disagree"


def test_model_files_build_model_configs():
    for path in (CONF / "model").glob("*.yaml"):
        ModelConfig.from_dict(OmegaConf.to_container(OmegaConf.load(path)))


def test_default_group_values_match_the_python_defaults():
    """The Python API and the CLI start from the same defaults."""
    assert OmegaConf.to_container(OmegaConf.load(CONF / "features" / "logmel80.yaml")) == asdict(FeatureConfig())
    assert OmegaConf.to_container(OmegaConf.load(CONF / "specaugment" / "default.yaml")) == asdict(SpecAugmentConfig())


def test_loggers_build_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("logger=auto")
    names = sorted(type(lg).__name__ for lg in build_loggers(cfg.logger, tmp_path))
    assert names == ["CSVLogger", "WandbLogger"]


@pytest.mark.parametrize("override,message", [
    ("recipe=nope", "Could not find 'recipe/nope'"),
    ("model.hiden_size=3", "Could not override 'model.hiden_size'"),
])
def test_bad_config_is_a_one_line_hydra_error(override, message):
    out = subprocess.run([sys.executable, "scripts/train.py", override], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
