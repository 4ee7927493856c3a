"""The command line as a user meets it: help, listings, and one clear line for every kind of bad input."""

import pytest

from tests.conftest import run_cli
from tests.hostile import run_here  # the same main() in this process: the error lines without a new interpreter


def test_help_lists_every_subcommand(tmp_path):
    out = run_cli(["--help"], tmp_path)
    assert out.returncode == 0
    for command in ("train", "list", "config"):
        assert command in out.stdout
    train_help = run_cli(["train", "--help"], tmp_path)
    assert train_help.returncode == 0 and "-m" in train_help.stdout and "resume" in train_help.stdout


def test_list_shows_groups_options_and_descriptions(tmp_path):
    out = run_cli(["list"], tmp_path, env_extra={"COLUMNS": "200"})
    assert out.returncode == 0
    for text in ("dcgan", "vae", "digits", "fashion_mnist", "celeba", "image_folder", "adam", "rmsprop", "cuda",
                 "nonsaturating", "Radford"):
        assert text in out.stdout
    model_only = run_cli(["list", "model"], tmp_path, env_extra={"COLUMNS": "200"})
    assert "dcgan" in model_only.stdout and "Debian" not in model_only.stdout


def test_config_show_refuses_what_train_would_refuse(tmp_path):
    line = _one_line_error(run_here(["config", "show", "train.epochs=abc"], tmp_path))
    assert "train.epochs must be an integer" in line


def test_config_show_prints_the_resolved_config(tmp_path):
    out = run_cli(["config", "show", "model=vae", "model.latent_dim=2", "train.epochs=3"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "latent_dim: 2" in out.stdout and "epochs: 3" in out.stdout and "name: vae" in out.stdout


def _one_line_error(out):
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("genlab: ") and "Traceback" not in out.stderr + out.stdout
    return lines[0]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["model=nosuch"], ["unknown model 'nosuch'", "dcgan", "vae"]),
        (["data=nosuch"], ["unknown data 'nosuch'", "digits", "celeba"]),
        (["model.name=nosuch"], ["unknown model 'nosuch'", "dcgan"]),
        (["train.epochs=abc"], ["train.epochs must be an integer", "'abc'"]),
        (["model.nz=abc"], ["model.nz must be an integer", "'abc'"]),
        (["model=vae", "model.beta=abc"], ["model.beta must be a number"]),
        (["model.ngf=0"], ["model.ngf must be at least 1"]),
        (["optim.lr=-1"], ["optim.lr must be positive"]),
        (["optim.eps=abc"], ["optim.eps must be a number"]),
        (["optim.weight_decay=-1"], ["optim.weight_decay must be at least 0"]),
        (["device.ids=[abc]"], ["device.ids must be a list of GPU numbers"]),
        (["train.epochz=3"], ["unknown key train.epochz", "did you mean train.epochs?"]),
        (["train.epoch=3"], ["unknown key train.epoch", "did you mean train.epochs?"]),
        (["+train.foo=1"], ["unknown key train.foo", "would change nothing"]),
        (["+train.epochz=3"], ["unknown key train.epochz", "did you mean train.epochs?"]),
        (["+train.epochs=3"], ["train.epochs already exists", "without the +"]),
        (["model=dcgn"], ["unknown model 'dcgn'", "did you mean dcgan?"]),
        (["model=vae", "+model.scater=tsne"], ["did you mean model.scatter?"]),
        (["train.on_nan=maybe"], ["train.on_nan must be one of stop, skip"]),
        (["--cfg", "bogus"], ["--cfg takes one of job, hydra, all", "'bogus'"]),
        (["--info", "bogus"], ["--info takes one of all, config"]),
        (["--config-name", "nope"], ["no root config named 'nope'"]),
        (["--shell-completion"], ["does not take Hydra's --shell-completion"]),
        (["--version"], ["genlab --version"]),
        (["data=image_folder"], ["data.root is required"]),
        (["data.size=30"], ["power of two"]),
        (["model=dcgan,vae"], ["lists several values", "-m"]),
        (["-m", "optim.lr=1e-4,abc"], ["optim.lr must be a number", "'abc'"]),
        (["-m", "data.size=16,24"], ["power of two", "24"]),
        (["-m", "model=choice(dcgan,nosuch)"], ["unknown model 'nosuch'"]),
        (["-m", "train.resume=auto", "train.seed=1,2"], ["train.resume=auto", "-m"]),
        (["train.resume=/no/such/run"], ["no run folder or checkpoint at /no/such/run"]),
        (["loss.n_critic=null"], ["loss.n_critic must be an integer"]),
        (["-m", "sweep=gan_losses", "optim.betas=[0.5,0.999]"], ["unknown key optim.betas"]),  # only the wgan job
        (["--bogus"], ["unknown option --bogus"]),
        (["-cp", "/tmp"], ["--config-dir"]),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, args, expected):
    line = _one_line_error(run_here(["train", "train.epochs=1", *args], tmp_path))
    for text in expected:
        assert text in line
    assert not (tmp_path / "outputs").exists()  # caught before Hydra made any run folder


def test_flags_may_come_after_overrides(tmp_path):
    out = run_cli(["train", "train.epochs=1", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "epochs: 1" in out.stdout and not (tmp_path / "outputs").exists()


def test_celeba_without_data_says_where_to_put_it(tmp_path):
    line = _one_line_error(run_here(["train", "data=celeba", f"data.root={tmp_path / 'data'}"], tmp_path))
    assert "img_align_celeba" in line and str(tmp_path / "data") in line
    assert not (tmp_path / "outputs").exists()  # checked before any run folder is made


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should go")
    line = _one_line_error(run_here(["train", f"hydra.run.dir={blocker}/run"], tmp_path))
    assert "cannot write the run folder" in line and "is a file" in line
    assert blocker.read_text().startswith("a file")


def test_an_error_found_while_loading_leaves_no_empty_run_folder(tmp_path):
    line = _one_line_error(run_here(["train", "data.limit=10", "train.batch_size=64"], tmp_path))
    assert "fewer than train.batch_size=64" in line
    assert not (tmp_path / "outputs").exists()  # nor the folders made on the way to it
