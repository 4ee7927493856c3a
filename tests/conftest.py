import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
torch = pytest.importorskip("torch")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker a core (pytest -n auto): one thread each, in the genlab processes the tests start too
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))

GENLAB = [sys.executable, "-m", "genlab"]
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one worker a core this process may use (its affinity and a cgroup CPU quota, which
    os.cpu_count() does not see), at most one per 3 GiB of memory, and at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        cores = min(cores, max(1, memory // (3 << 30)))
    except (ValueError, OSError, AttributeError):
        pass
    return max(1, min(cores, 8))


def run_cli(args, cwd, timeout=600, env_extra=None):
    """Run `python -m genlab ARGS` as a user would, with no network."""
    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    return subprocess.run(GENLAB + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def compose():
    from genlab.app.compose import compose as _compose

    return lambda *overrides: _compose(list(overrides))


@pytest.fixture
def train(compose):
    """Train in-process: train(run_dir, *overrides) -> the last logged scalars."""
    from genlab.app.entry import run_training

    def _train(run_dir, *overrides):
        cfg = compose("train.progress=none", *overrides)
        return run_training(cfg, Path(run_dir))

    return _train


@pytest.fixture(scope="session", autouse=True)
def genlab_cache(tmp_path_factory):
    """One GENLAB_CACHE for the whole test run (the domain classifiers `genlab eval` trains are trained once and
    shared by the tests, on a warm machine as in CI), never the user's own ~/.cache/genlab. With pytest -n the
    workers share it: genlab writes each cache entry whole."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "genlab-cache"
    folder.mkdir(exist_ok=True)
    previous = os.environ.get("GENLAB_CACHE")
    os.environ["GENLAB_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("GENLAB_CACHE", None)
    else:
        os.environ["GENLAB_CACHE"] = previous


@pytest.fixture(scope="session")
def digit_classifier():
    """Logistic regression on the real 8x8 digits (96.7% on the held-out fifth): predict(images) pools
    [-1, 1] images to 8x8 first. Judges whether a model draws the digit it was asked for."""
    import numpy as np
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    x, y = digits.images.reshape(-1, 64) / 16.0, digits.target
    held_out = np.arange(len(x)) % 5 == 4
    clf = LogisticRegression(max_iter=3000).fit(x[~held_out], y[~held_out])
    assert clf.score(x[held_out], y[held_out]) > 0.95

    def predict(images):
        pooled = F.adaptive_avg_pool2d((images.float().cpu() + 1) / 2, 8).reshape(len(images), 64)
        return clf.predict(pooled.numpy())

    return predict


@pytest.fixture
def interrupt_at(monkeypatch):
    """with interrupt_at(ModelClass, step): Ctrl-C arrives during training step `step` (0-based); the trainer
    finishes that step, saves last.pt and raises Interrupted."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def patched(model_class, at_step):
        real = model_class.training_step

        def step_then_ctrl_c(self, batch, step):
            out = real(self, batch, step)
            if step == at_step:
                os.kill(os.getpid(), signal.SIGINT)
            return out

        with monkeypatch.context() as patch:
            patch.setattr(model_class, "training_step", step_then_ctrl_c)
            yield

    return patched


@pytest.fixture(scope="session")
def hostile_runs(tmp_path_factory):
    """Tiny trained runs of each kind the commands read (dcgan, vae, pix2pix, srresnet), a sweep folder of two jobs,
    and their data (tests/hostile.py); tests copy them before they damage anything."""
    from tests.hostile import train_runs

    return train_runs(tmp_path_factory.mktemp("hostile_runs"))
