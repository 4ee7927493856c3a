"""Property: any combination of overrides either trains or ends with one `genlab:` line and exit 2; never a
traceback, never a run folder left that holds neither a checkpoint nor a logged training step."""

import itertools

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from genlab.rundir import trained  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

# each entry: a group or key, and values that are right, of the wrong type, out of range, or unknown
CHOICES = {
    "model": ["dcgan", "vae", "cgan", "vqvae", "dcgn", "nosuch"],
    "data": ["digits", "image_folder", "nosuch"],
    "loss": ["hinge", "wgan_gp", "lsgan", "bogus"],
    "optim": ["adam", "sgd", "rmsprop", "nope"],
    "train.batch_size": ["16", "0", "-3", "abc", "2.5", "null"],
    "train.epochs": ["1", "0", "x", "[1,2]"],
    "train.on_nan": ["stop", "skip", "maybe"],
    "train.seed": ["0", "7", "1.5", "seed"],
    "optim.lr": ["1e-3", "0", "-1", "abc", "1e6"],
    "optim.betas": ["[0.5,0.999]", "[2,3]", "[0.5]", "x"],
    "data.size": ["16", "8", "30", "big"],
    "device.amp": ["none", "bf16", "fp64"],
    "model.latent_dim": ["2", "0", "abc"],
    "+train.foo": ["1"],
    "train.epoch": ["3"],
    "~train.seed": [None],
}
FAST = ["train.steps=1", "data.limit=64", "train.progress=none", "train.n_samples=4"]
counter = itertools.count()


@st.composite
def command_lines(draw):
    keys = draw(st.lists(st.sampled_from(sorted(CHOICES)), min_size=1, max_size=4, unique=True))
    line = []
    for key in keys:
        value = draw(st.sampled_from(CHOICES[key]))
        line.append(key if value is None else f"{key}={value}")
    return line


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=command_lines())
def test_any_overrides_train_or_fail_with_one_line(tmp_path, overrides):
    cwd = tmp_path / str(next(counter))
    cwd.mkdir()
    out = run_cli(["train", *FAST, *overrides], cwd, env_extra={"GENLAB_DATA": str(cwd / "data")})
    assert "Traceback" not in out.stdout + out.stderr, (overrides, out.stderr[-3000:])
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()] if (cwd / "outputs").exists() else []
    if out.returncode == 0:
        assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.pt").is_file(), overrides
    else:
        assert out.returncode == 2, (overrides, out.returncode, out.stderr[-3000:])
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("genlab: "), (overrides, out.stderr)
        assert all(trained(run) for run in runs), (overrides, runs)  # only runs with a checkpoint or logged steps
