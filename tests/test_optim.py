import pytest

from asr.config import ConfigError
from asr.training.config import validate
from asr.training.optim import OptimConfig, lr_factor
from tests.conftest import compose_config


def test_warmup_then_cosine_to_the_floor_at_the_last_step():
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.55)  # half way: the middle of the cosine
    assert lr_factor(110, cfg, 110) == pytest.approx(0.1)


def test_time_clock_ends_the_decay_with_the_time_budget_or_the_steps_whichever_is_first():
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1, clock="time")
    assert lr_factor(20, cfg, 1000, time_fraction=1.0) == pytest.approx(0.1)  # budget spent at step 20
    assert lr_factor(20, cfg, 1000, time_fraction=0.5) == pytest.approx(0.55)
    assert lr_factor(1000, cfg, 1000, time_fraction=0.2) == pytest.approx(0.1)  # the steps ran out first


def test_time_clock_needs_a_time_budget():
    with pytest.raises(ConfigError, match="optim.clock=time.*trainer.max_time"):
        validate(compose_config("optim.clock=time", "trainer.max_time=null"))
    validate(compose_config("optim.clock=time", "trainer.max_time=00:00:10:00"))
