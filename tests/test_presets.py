"""Every preset composes (lightning-hydra-template's smoke test), and the GAN-loss sweep preset really runs."""

import pytest

from genlab.core.paths import config_dir
from tests.conftest import run_cli

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_composes_and_validates(compose, name, tmp_path, monkeypatch):
    from genlab.train.validate import validate

    cfg = compose(f"experiment={name}")
    if cfg.model.name == "srgan":  # its presets start from an SRResNet run the user names, with VGG19's weights
        cfg = compose(f"experiment={name}", "train.init_from=outputs/srresnet_run")
        (tmp_path / "vgg19.pth").write_bytes(b"")  # validate looks for the file; loading it is another test's
        monkeypatch.setenv("GENLAB_VGG19_WEIGHTS", str(tmp_path / "vgg19.pth"))
    validate(cfg)
    if not name.startswith("gan_"):  # the reports' presets are named <model>_<data or what the folders hold>
        assert name.startswith(cfg.model.name + "_")
        if not cfg.data.name.startswith("image_folder") and "_anomaly" not in name:  # maf_anomaly: seed 001's task
            # the data's name, its first word (realnvp_fashion) or, for toy2d, the shape (maf_moons)
            words = {cfg.data.name.replace("_", ""), cfg.data.name.split("_")[0], str(cfg.data.get("shape") or "")}
            assert any(word and word in name.replace("_", "") for word in words)


def test_mode_collapse_preset_makes_g_much_faster_than_d(compose):
    cfg = compose("experiment=gan_mode_collapse")
    assert cfg.optim.g.lr == 1e-3 and cfg.optim.d.lr == 5e-5 and cfg.train.epochs == 20


def test_vanishing_gradient_preset_sets_a_saturating_loss_against_a_fast_d(compose):
    cfg = compose("experiment=gan_vanishing_gradients")
    assert (cfg.loss.name, cfg.loss.n_critic, cfg.optim.d.lr, cfg.data.name) == ("minimax", 5, 1e-3, "digits")
    assert compose("experiment=gan_vanishing_gradients", "loss=nonsaturating").loss.name == "nonsaturating"


def test_lab_sheet_preset_is_the_lab_sheet(compose):
    cfg = compose("experiment=dcgan_celeba64")
    assert (cfg.model.ngf, cfg.model.ndf, cfg.model.nz, cfg.data.size) == (64, 64, 100, 64)
    assert cfg.loss.name == "nonsaturating"


def test_gan_losses_sweep_preset_runs_one_job_per_loss(tmp_path):
    out = run_cli(["train", "-m", "sweep=gan_losses", "train.steps=2", "data.limit=32", "train.batch_size=16",
                   "model.ngf=8", "model.ndf=8", "train.n_samples=8"], tmp_path)
    assert out.returncode == 0, out.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").iterdir()
    losses = sorted((job / ".hydra" / "overrides.yaml").read_text().split("loss=")[1].split()[0]
                    for job in sweep.iterdir() if job.is_dir())
    assert losses == ["hinge", "lsgan", "minimax", "nonsaturating", "wgan", "wgan_gp"]
    assert all((job / "checkpoints" / "last.pt").is_file() for job in sweep.iterdir() if job.is_dir())
