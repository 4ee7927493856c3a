"""The losses of the first 50 steps stay what they were before the trainer and data layer were reshaped."""

import json

import pytest

from tests.baseline import FILE, RUNS, capability, losses

RECORDED = json.loads(FILE.read_text())
# the default run, a VAE and a flow in the default selection (seconds each); all sixteen with -m slow
FAST = {"default", "vae", "made"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in RUNS])
def test_first_50_losses_are_unchanged(name):
    if capability() not in RECORDED:
        pytest.skip(f"no losses recorded for {capability()} CPUs: record them with `python -m tests.baseline` on a "
                    "commit whose numbers are known good")
    if name not in RECORDED[capability()]:
        pytest.skip(f"no losses recorded for {name} on {capability()} CPUs: `python -m tests.baseline {name}`")
    got = losses(RUNS[name])
    want = RECORDED[capability()][name]
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
