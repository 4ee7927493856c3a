"""Speed and scale: data-parallel training (genlab train --nproc, torchrun), torch.compile, AMP and channels_last
on every family, Hydra's launchers. The long ones are `-m slow`."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

# device=cpu: gloo on the CPU, also where a GPU is present (one GPU cannot hold two ranks)
FLOW_POINTS = ["device=cpu", "model=realnvp", "data=toy2d", "data.n_train=2048", "data.n_test=256", "train.steps=12",
               "train.log_every=3", "train.progress=none", "train.sample_every=100"]
GAN = ["device=cpu", "model=dcgan", "data=digits", "data.size=16", "model.ngf=8", "model.ndf=8", "train.batch_size=32",
       "train.log_every=3", "train.progress=none", "train.sample_every=100"]


def _records(run: Path, key: str) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in lines if key in r]


# ---- BatchNorm over the global batch ----------------------------------------------------------------------------
def _batchnorm_rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from genlab.core import distributed

    distributed.init()
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    assert distributed.sync_batchnorm(net, torch.device("cpu")) == 1
    share = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
    (net(share) * torch.arange(1.0, 5.0).view(1, 4, 1, 1)).sum().backward()
    grads = [p.grad for p in net.parameters()]
    distributed.average_gradients(grads)
    torch.save({"x_grad": share.grad, "grads": [g * world for g in grads], "state": net.state_dict()},
               f"{out}/rank{rank}.pt")
    distributed.close()


def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    """Two gloo processes, each with half of a batch: outputs' gradients, the weights' summed gradients and the
    running statistics are those of one nn.BatchNorm2d over the whole batch."""
    from genlab.train.launch import free_port

    torch.multiprocessing.spawn(_batchnorm_rank, args=(2, free_port(), str(tmp_path)), nprocs=2)
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 5, 5) * 3 + 1).requires_grad_()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    (net(x) * torch.arange(1.0, 5.0).view(1, 4, 1, 1)).sum().backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.allclose(torch.cat([r["x_grad"] for r in ranks]), x.grad, atol=1e-5)
    for ours, theirs in zip(ranks[0]["grads"], (p.grad for p in net.parameters())):
        assert torch.allclose(ours, theirs, atol=1e-4)
    assert set(ranks[0]["state"]) == set(net.state_dict())  # BatchNorm's own names: checkpoints load anywhere
    for key, value in net.state_dict().items():
        assert torch.allclose(ranks[0]["state"][key].float(), value.float(), atol=1e-5), key
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key


# ---- genlab train --nproc ---------------------------------------------------------------------------------------
def test_two_processes_train_the_run_one_process_would(tmp_path, train, caplog):
    """`genlab train --nproc 2` on gloo: one run folder written by rank 0 alone, and, with a deterministic step (a
    flow on points: no noise), the very losses of one process with the same global batch."""
    from genlab.train.runs import load_run

    two = run_cli(["train", "--nproc", "2", *FLOW_POINTS, f"hydra.run.dir={tmp_path / 'two'}"], tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    train(tmp_path / "one", *FLOW_POINTS)
    assert "data-parallel over 2 processes: each trains on 32 of every batch of 64" in two.stdout
    a, b = _records(tmp_path / "two", "loss"), _records(tmp_path / "one", "loss")
    assert [s for s, _ in a] == [s for s, _ in b] == [3, 6, 9, 12]
    assert all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(a, b)), (a, b)
    assert a[-1][1] < a[0][1]  # it learns
    # rank 0 wrote everything; rank 1 added no .hydra or log of its own, and the checkpoint loads in one process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert {p.name for p in (tmp_path / "two").iterdir()} == {"checkpoints", "samples", "tb", "metrics.jsonl",
                                                              "curves.png", ".hydra", "train.log"}
    assert "data-parallel over 2" in (tmp_path / "two" / "train.log").read_text()
    state = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # each its own noise
    assert set(state["model"]) == set(torch.load(tmp_path / "one" / "checkpoints" / "last.pt",
                                                 weights_only=True)["model"])
    assert load_run(tmp_path / "two").model.sample(16, generator=torch.Generator().manual_seed(0)).shape == (16, 2)
    # on another number of processes it goes on from the same weights and position, and says it is not exact
    caplog.set_level("INFO", logger="genlab")
    last = train(tmp_path / "more", *FLOW_POINTS, "train.steps=15", f"train.resume={tmp_path / 'two'}")
    assert "was saved by 2 process(es) and this run has 1" in caplog.text and "not an exact resume" in caplog.text
    assert _records(tmp_path / "more", "loss")[-1][0] == 15 and last["loss"] > 0


def test_an_nproc_mistake_is_one_line_before_any_folder(tmp_path):
    result = run_cli(["train", "--nproc", "3", "device=cpu", "train.steps=1"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("genlab: train.batch_size=64 is the global batch and must split evenly over the "
                                     "3 processes: use a multiple of 3, e.g. train.batch_size=63")
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args,env,expected", [
    (["--nproc", "two"], {}, "--nproc takes a number of processes"),
    (["--nproc", "0"], {}, "--nproc takes a number of processes"),
    (["--nproc", "2", "-m", "train.steps=1,2"], {}, "for a sweep (-m) run each job as"),
    (["-m", "train.steps=1,2"], {"WORLD_SIZE": "2", "RANK": "0"}, "for a sweep (-m) run each job as"),
    (["--nproc", "2"], {"WORLD_SIZE": "2", "RANK": "0"}, "under torchrun leave it out"),
    (["train.steps=1"], {"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but MASTER_ADDR is not"),
    (["--nproc", "2", "loss=wgan_gp", "model.d_norm=batch"], {}, ("loss=wgan_gp with model.d_norm=batch cannot run "
                                                                 "data-parallel")),
])
def test_nproc_mistakes_are_one_line(tmp_path, monkeypatch, args, env, expected):
    """The same checks in-process (the subprocess test above shows the one line and exit code they become)."""
    from typer.testing import CliRunner

    from genlab.app.cli import app
    from genlab.core import distributed
    from genlab.core.errors import GenlabError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(distributed, "PLANNED", 1)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["train", *args, "device=cpu"])
    assert isinstance(result.exception, GenlabError) and expected in str(result.exception), result.output
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_an_interrupted_data_parallel_gan_resumes_exactly(tmp_path):
    """DCGAN (BatchNorm over the global batch) on 2 processes: SIGTERM mid-run saves and says how to go on; the
    resumed run ends with the losses and weights of a straight 2-process run."""
    steps = ["train.steps=240"]
    straight = run_cli(["train", "--nproc", "2", *GAN, *steps, f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    synced = re.search(r"each trains on 16 of every batch of 32; (\d+) BatchNorm layers normalise over the whole "
                       r"batch", straight.stdout)
    assert synced and int(synced.group(1)) >= 3, straight.stdout[-2000:]  # G's and D's
    run = tmp_path / "cut"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "genlab", "train", "--nproc", "2", *GAN, *steps,
                             f"hydra.run.dir={run}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").is_file() or len(_records(run, "d_loss")) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-2000:]
    assert "Continue with: genlab train --nproc 2" in out
    cut = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < cut["step"] < 240
    resumed = run_cli(["train", "--nproc", "2", *GAN, *steps, f"train.resume={run}", f"hydra.run.dir={run}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the same log steps, the same numbers up to the cut (the interval the stop cut averages fewer steps)
    cut_records, straight_records = _records(run, "d_loss"), _records(tmp_path / "straight", "d_loss")
    assert [s for s, _ in cut_records] == [s for s, _ in straight_records]
    before = [r for r in straight_records if r[0] <= cut["step"] // 3 * 3]
    assert cut_records[: len(before)] == before
    a = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 240
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_torchrun_runs_genlab_train(tmp_path):
    """`torchrun --nproc-per-node 2 -m genlab train`: rank 0 claims the time-stamped folder and tells rank 1."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "genlab", "train", *FLOW_POINTS], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "outputs" / "realnvp_toy2d").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "last.pt").is_file()
    assert len(_records(runs[0], "loss")) == 4 and (runs[0] / ".hydra" / "config.yaml").is_file()


# ---- compile, AMP, channels_last -------------------------------------------------------------------------------
FAMILIES = {
    "dcgan": ["model=dcgan", "data=digits", "data.size=16", "model.ngf=8", "model.ndf=8"],
    "cgan": ["model=cgan", "data=digits", "data.size=16", "model.g_width=32", "model.d_width=32"],
    "acgan": ["model=acgan", "data=digits", "data.size=16", "model.g_width=32", "model.d_width=32"],
    "infogan": ["model=infogan", "data=digits", "data.size=16"],
    "vae": ["model=vae", "data=digits", "data.size=16"],
    "cvae": ["model=cvae", "data=digits", "data.size=16"],
    "vqvae": ["model=vqvae", "data=digits", "data.size=16", "model.width=16", "model.res_width=8"],
    "made": ["model=made", "data=digits", "data.size=8", "model.hidden=32"],
    "maf": ["model=maf", "data=digits", "data.size=8", "model.layers=2", "model.hidden=32"],
    "iaf": ["model=iaf", "data=toy2d", "model.layers=2", "model.hidden=16", "data.n_train=256", "data.n_test=64"],
    "realnvp": ["model=realnvp", "data=digits", "data.size=8", "model.layers=2", "model.width=8"],
    "pix2pix": ["model=pix2pix", "data=edges2fashion", "data.limit=32", "data.test_limit=8", "model.ngf=8",
                "model.ndf=8", "model.d_layers=2"],
    "cyclegan": ["model=cyclegan", "data=sandal2sneaker", "data.limit=16", "data.test_limit=8", "model.ngf=8",
                 "model.ndf=8", "model.n_blocks=1", "model.d_layers=2", "model.pool_size=4"],
    "srresnet": ["model=srresnet", "data=sr_photos", "model.n_blocks=1", "model.width=8", "data.size=32"],
    "srgan": ["model=srgan", "data=sr_photos", "model.n_blocks=1", "model.width=8", "data.size=32",
              "model.ndf=8", "model.content=mse", "model.from_scratch=true"],
}
FAST = ("dcgan",)
SWITCHES = ["device=cpu", "device.compile=true", "device.compile_backend=aot_eager", "device.amp=bf16",
            "device.channels_last=true"]
COMMON = ["train.batch_size=8", "train.steps=2", "train.log_every=1", "train.n_samples=4", "train.sample_every=100"]


def _needs_fashion(name: str) -> None:
    if name in ("pix2pix", "cyclegan") and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist")


def _compiled_family(tmp_path, train, compose, name):
    from torch._dynamo.utils import counters

    from genlab.models import build_model
    from genlab.train.runs import load_run

    _needs_fashion(name)
    torch._dynamo.reset()
    counters.clear()
    last = train(tmp_path / name, *FAMILIES[name], *COMMON, *SWITCHES)
    assert counters["stats"]["unique_graphs"] > 0, name  # the networks really went through torch.compile
    losses = {k: v for k, v in last.items() if "loss" in k}
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), (name, last)
    state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)
    plain = build_model(compose(*FAMILIES[name], *COMMON), load_run(tmp_path / name).spec)
    assert set(state["model"]) == set(plain.state_dict()), name  # compiled in place: the keys are the plain ones
    resumed = train(tmp_path / f"{name}_more", *FAMILIES[name], *COMMON, *SWITCHES, "train.steps=3",
                    f"train.resume={tmp_path / name}")
    assert resumed


@pytest.mark.parametrize("name", FAST)
def test_compile_amp_and_channels_last_train_together(tmp_path, train, compose, name):
    """device.compile (aot_eager here; inductor in the slow test), bf16 autocast and channels_last at once:
    finite losses, a checkpoint with the plain networks' keys, and a resume."""
    _compiled_family(tmp_path, train, compose, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(FAMILIES) - set(FAST)))
def test_compile_amp_and_channels_last_on_every_family(tmp_path, train, compose, name):
    _compiled_family(tmp_path, train, compose, name)


@pytest.mark.slow
def test_inductor_compiles_a_dcgan(tmp_path, train):
    last = train(tmp_path / "run", *FAMILIES["dcgan"], *COMMON, "device=cpu", "device.compile=true")
    assert torch.isfinite(torch.tensor(last["d_loss"]))


def test_fp16_grad_scalers_resume_exactly(tmp_path, train):
    """device.amp=fp16: one GradScaler per optimiser, saved and restored, so 3 + 3 steps equal 6."""
    settings = [*FAMILIES["dcgan"], "train.batch_size=8", "train.log_every=1", "train.sample_every=100",
                "device=cpu", "device.amp=fp16", "train.n_samples=4"]
    train(tmp_path / "straight", *settings, "train.steps=6")
    train(tmp_path / "first", *settings, "train.steps=3")
    train(tmp_path / "resumed", *settings, "train.steps=6", f"train.resume={tmp_path / 'first'}")
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert set(a["scalers"]) == {"g", "d"} and a["scalers"] == b["scalers"]
    assert a["scalers"]["g"]["scale"] > 0
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_compile_settings_are_checked(compose):
    from genlab.core.errors import GenlabError
    from genlab.train.validate import validate

    for overrides, message in ((["device.compile=yes"], "device.compile must be true or false"),
                               (["device.compile_backend=tvm"], "device.compile_backend must be one of"),
                               (["device.compile_mode=fast"], "device.compile_mode must be null or one of"),
                               (["device.compile_backend=eager", "device.compile_mode=max-autotune"], "inductor's"),
                               (["device.threads=0"], "device.threads must be at least 1")):
        with pytest.raises(GenlabError, match=message.replace("(", r"\(")):
            validate(compose(*overrides))


# ---- Hydra's launchers -----------------------------------------------------------------------------------------
SWEEP = ["device=cpu", "model=realnvp", "data=toy2d", "data.n_train=512", "data.n_test=128", "train.steps=16", "train.log_every=4",
         "train.progress=none", "optim.lr=1e-3,2e-3"]


def test_a_launcher_without_its_plugin_names_the_extra(monkeypatch):
    from genlab.app import checks, compose
    from genlab.core.errors import GenlabError

    monkeypatch.setitem(compose.LAUNCHER_PLUGINS, "local", "hydra_plugins.no_such_joblib_launcher")
    with pytest.raises(GenlabError, match=r"hydra/launcher=local needs Hydra's joblib launcher, which is not "
                                          r"installed: pip install 'genlab\[launchers\]'"):
        checks.check_command_line(["-m", "hydra/launcher=local", "optim.lr=1e-3,2e-3"])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
def test_a_two_job_sweep_through_a_launcher(tmp_path, launcher):
    """hydra/launcher=local (joblib: 2 jobs at once, cores / 2 torch threads each) and submitit_local: both jobs
    train in their own folders, each with its own learning rate."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if launcher == "local"
                        else "hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli(["train", "-m", f"hydra/launcher={launcher}", *SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, lr in (("0", "0.001"), ("1", "0.002")):
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
        assert len(_records(sweep / job, "loss")) == 4
        assert f"optim.lr={lr}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
    log = (sweep / "0" / "train.log").read_text()
    if launcher == "local":
        assert f"torch uses {max(1, (os.cpu_count() or 1) // 2)} CPU thread(s)" in log


@pytest.mark.slow
def test_a_job_submitit_requeues_resumes_its_run(tmp_path):
    """submitit_local with a 1-minute limit: its warning (SIGUSR2, 30 s before) makes the job save, submitit
    requeues it, the requeued job resumes from its own last.pt, and the run ends as a straight one does."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # about 200 steps a second here: the first attempt is warned at 30 s and stopped well before the end
    steps = ["model=realnvp", "data=toy2d", "data.n_train=4096", "data.n_test=256", "train.steps=12000",
             "train.log_every=200", "train.progress=none", "train.sample_every=1000"]
    sweep = tmp_path / "sweep"
    result = run_cli(["train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1",
                      "+hydra.launcher.max_num_timeout=4", *steps, "optim.lr=1e-3", f"hydra.sweep.dir={sweep}"],
                     tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (sweep / "0" / "train.log").read_text()
    assert "handing over to the job scheduler's handler" in log and "(a requeued job): resuming from" in log
    straight = run_cli(["train", *steps, "optim.lr=1e-3", f"hydra.run.dir={tmp_path / 'straight'}"], tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]
    # (the logged averages differ where the stop cut a log interval; the weights must not)
    a = torch.load(sweep / "0" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12000
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [s for s, _ in _records(sweep / "0", "loss")] == [s for s, _ in _records(tmp_path / "straight", "loss")]
