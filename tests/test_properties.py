"""Property: any combination of overrides either trains or ends with one `genlab:` line and exit 2; never a
traceback, never a run folder left that holds neither a checkpoint nor a logged training step."""

import itertools
import shutil
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genlab.train.rundir import trained
from tests import hostile
from tests.hostile import one_line_or_success, run_here

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


EXAMPLES = 20  # drawn by each property in the default selection; its `-m slow` twin draws MANY
MANY = 200


def _train_property(examples: int):
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(overrides=command_lines())
    def check(tmp_path, monkeypatch, overrides):
        _check_train(tmp_path, monkeypatch, overrides)

    return check


def _check_train(tmp_path, monkeypatch, overrides):
    cwd = tmp_path / str(next(counter))
    cwd.mkdir()
    monkeypatch.setenv("GENLAB_DATA", str(cwd / "data"))
    out = run_here(["train", *FAST, *overrides], cwd)  # the same main() as `genlab train`, in this process
    assert out.escaped is None and "Traceback" not in out.stdout + out.stderr, (overrides, out.stderr[-3000:])
    runs = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()] if (cwd / "outputs").exists() else []
    if out.returncode == 0:
        assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.pt").is_file(), overrides
    else:
        assert out.returncode == 2, (overrides, out.returncode, out.stderr[-3000:])
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("genlab: "), (overrides, out.stderr)
        assert all(trained(run) for run in runs), (overrides, runs)  # only runs with a checkpoint or logged steps


test_any_overrides_train_or_fail_with_one_line = _train_property(EXAMPLES)
test_any_overrides_train_or_fail_with_one_line_many = pytest.mark.slow(_train_property(MANY))


# ---- the commands that read a run folder, over hostile run folders -----------------------------------------
# Each example copies a tiny trained run, applies up to three of tests/hostile.py's crafted changes (links out
# of the folder, torn, binary, wrong-typed, huge or linked files, crafted checkpoint fields), and runs one
# command on it in this process: it succeeds or says one `genlab:` line with exit 2; never a traceback, and the
# canary folder every link points at is untouched.


MUTATIONS = sorted(hostile.mutations(Path("/canary")))


def _commands(runs, work: Path):
    inputs = runs["data"] / "inputs"
    return {
        "sample": ("dcgan", [[], ["-n", "5", "--labels", "1"], ["-n", "3", "-o", work / "o.png"],
                             ["-n", "3", "-o", work / "folder"], ["--seed", "7", "-n", "2"]]),
        "eval": ("vae", [["--metrics", "likelihood", "-n", "10"], ["--metrics", "ood", "--ood-data", "digits", "-n", "10"],
                         ["--anomaly", "-n", "10"], ["--metrics", "likelihood", "-n", "10", "--data", "data.limit=20"]]),
        "report": ("dcgan", [[], ["-o", work / "rep"], ["--epochs", "0,1"]]),
        "translate": ("pix2pix", [[inputs / "in0.png", work / "t.png"], [inputs, work / "t"],
                                  [inputs / "in1.png", work / "t.png", "--direction", "BtoA"]]),
        "upscale": ("srresnet", [[inputs / "in0.png", work / "u.png"], [inputs, work / "u", "--tile", "6"],
                                 [inputs / "in1.png", work / "u.png", "--whole"]]),
    }


@st.composite
def hostile_cases(draw):
    changes = draw(st.lists(st.sampled_from(MUTATIONS), min_size=0, max_size=3, unique=True))
    variant = draw(st.integers(0, 4))
    return changes, variant


def _check_command(command, runs, case, root: Path) -> None:
    changes, variant = case
    work = root / str(next(counter))
    canary = hostile.make_canary(work / "canary")
    before = hostile.snapshot(canary)
    kind, variants = _commands(runs, work)[command]
    source = runs["sweep"] if command == "report" and variant == 4 else runs[kind]
    run = work / "run"
    shutil.copytree(source, run, symlinks=True)
    fns = hostile.mutations(canary)
    for name in changes:
        target = run / "1" if source == runs["sweep"] else run
        try:
            fns[name](target)
        except Exception:  # noqa: BLE001, S112  (a change that needs what an earlier one removed or broke: the others
            continue  # still apply, and the command still meets them)
    args = [command, run, *variants[variant % len(variants)]]
    ran = run_here(args, work)
    one_line_or_success(ran, (changes, args))
    assert hostile.snapshot(canary) == before, (changes, args)
    assert not (canary / "ran").exists()
    shutil.rmtree(work, ignore_errors=True)


def _property(command, examples=EXAMPLES):
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(case=hostile_cases())
    def check(hostile_runs, tmp_path, monkeypatch, case):
        monkeypatch.setenv("GENLAB_DATA", str(hostile_runs["data"]))
        monkeypatch.setenv("GENLAB_CACHE", str(hostile_runs["data"].parent / "cache"))
        _check_command(command, hostile_runs, case, tmp_path)

    check.__name__ = f"test_{command}_on_any_hostile_run_folder_succeeds_or_says_one_line"
    return check if examples == EXAMPLES else pytest.mark.slow(check)


test_sample_on_any_hostile_run_folder_succeeds_or_says_one_line = _property("sample")
test_eval_on_any_hostile_run_folder_succeeds_or_says_one_line = _property("eval")
test_report_on_any_hostile_run_folder_succeeds_or_says_one_line = _property("report")
test_translate_on_any_hostile_run_folder_succeeds_or_says_one_line = _property("translate")
test_upscale_on_any_hostile_run_folder_succeeds_or_says_one_line = _property("upscale")

# the same properties over more examples, with -m slow
test_sample_on_any_hostile_run_folder_succeeds_or_says_one_line_many = _property("sample", MANY)
test_eval_on_any_hostile_run_folder_succeeds_or_says_one_line_many = _property("eval", MANY)
test_report_on_any_hostile_run_folder_succeeds_or_says_one_line_many = _property("report", MANY)
test_translate_on_any_hostile_run_folder_succeeds_or_says_one_line_many = _property("translate", MANY)
test_upscale_on_any_hostile_run_folder_succeeds_or_says_one_line_many = _property("upscale", MANY)
