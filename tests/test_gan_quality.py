"""Do the GANs draw what they are asked for? Trained with the tuned digits presets (slow: minutes each)."""

import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow


def _trained(tmp_path, train, *overrides):
    from genlab.core.checkpoint import load_checkpoint
    from genlab.data import DataSpec
    from genlab.models import build_model

    train(tmp_path, *overrides)
    state = load_checkpoint(tmp_path)
    cfg = OmegaConf.create(state["config"])
    model = build_model(cfg, DataSpec("digits", 1, cfg.data.size, 10, class_names=[str(i) for i in range(10)]))
    model.load_state_dict(state["model"])
    return model


@pytest.mark.parametrize("name", ["cgan", "acgan"])
def test_conditional_gans_draw_the_requested_digit(tmp_path, train, digit_classifier, name):
    model = _trained(tmp_path, train, f"model={name}")  # the tuned digits preset: 40 epochs
    labels = torch.arange(1000) % 10
    samples = model.sample(1000, labels=labels, generator=torch.Generator().manual_seed(1))
    accuracy = (digit_classifier(samples) == labels.numpy()).mean()
    print(f"{name}: {accuracy:.3f} of samples classified as the requested digit")
    assert accuracy >= 0.8


def test_infogan_categorical_code_is_read_back(tmp_path, train):
    model = _trained(tmp_path, train, "model=infogan")  # tuned digits preset: 16x16, 30 epochs
    recovery = model.code_recovery(n=2000, seed=1)
    print(f"infogan: Q reads back the categorical code of {recovery:.3f} of fresh samples (chance 0.1)")
    assert recovery >= 0.5
