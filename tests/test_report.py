"""`genlab report`: figures from run folders, a sweep table, and an index.html a real browser can show."""

import csv
import re
import shutil
import subprocess

import pytest
from PIL import Image

from tests.conftest import run_cli
from tests.hostile import run_here  # the same main() in this process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def images_loaded_in_chromium(index, profile):
    """Open index.html in headless Chromium; the page's own script counts the figures that loaded."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom"]
    dom = subprocess.run([CHROMIUM, *flags, index.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    body = re.search(r'<body data-images-loaded="(\d+)" data-images-total="(\d+)"', dom)
    assert body, dom[:500]
    return int(body.group(1)), int(body.group(2))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real two-job Hydra multirun (two GAN losses), three epochs of 2 batches each."""
    root = tmp_path_factory.mktemp("sweep")
    out = run_cli(["train", "-m", "loss=nonsaturating,lsgan", "train.epochs=3", "data.limit=64", "train.batch_size=32",
                   "model.ngf=8", "model.ndf=8", "train.n_samples=16", "train.log_every=1", "hydra.sweep.dir=sw"], root)
    assert out.returncode == 0, out.stderr
    return root / "sw"


def test_report_of_a_multirun_has_the_table_the_overlaid_curves_and_an_index(sweep, tmp_path):
    out = run_cli(["report", str(sweep), "-o", "rep"], tmp_path)
    assert out.returncode == 0, out.stderr
    report = tmp_path / "rep"
    with open(report / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["loss"]) for r in rows] == [("0", "nonsaturating"), ("1", "lsgan")]
    assert all(float(r["d_loss"]) >= 0 and float(r["g_loss"]) > 0 for r in rows)
    markdown = (report / "sweep.md").read_text().splitlines()
    assert markdown[0].startswith("| job | loss | d_loss | g_loss") and len(markdown) == 4
    assert "nonsaturating" in out.stdout and "lsgan" in out.stdout  # the terminal table
    with Image.open(report / "sweep_curves.png") as curves:
        assert curves.width > 800 and curves.height > 300
    index = (report / "index.html").read_text()
    for name in ("sweep_curves.png", "job0_samples.png", "job1_samples.png"):
        assert f'src="{name}"' in index and (report / name).is_file()
    assert "<td>lsgan</td>" in index
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was not opened")
    loaded, total = images_loaded_in_chromium(report / "index.html", tmp_path / "profile")
    assert total == 3 and loaded == total
    # a figure that went missing is what the check is for
    (report / "job1_samples.png").unlink()
    loaded, total = images_loaded_in_chromium(report / "index.html", tmp_path / "profile")
    assert (loaded, total) == (2, 3)


def test_multirun_jobs_carry_tensorboard_hparams(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    seen = {}
    for job in ("0", "1"):
        events = EventAccumulator(str(sweep / job / "tb"))
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        params = start.session_start_info.hparams
        seen[params["loss"].string_value] = params["train.epochs"].number_value
        assert "final/g_loss" in events.Tags()["scalars"]
    assert seen == {"nonsaturating": 3.0, "lsgan": 3.0}


def test_report_of_a_run_has_progression_strips_curves_and_family_figures(tmp_path, train):
    train(tmp_path / "vae", "model=vae", "model.latent_dim=2", "data.limit=128", "train.batch_size=32",
          "train.epochs=4", "train.sample_every=2")
    out = run_cli(["report", "vae"], tmp_path)
    assert out.returncode == 0, out.stderr
    report = tmp_path / "vae" / "report"
    for name in ("progression_samples.png", "progression_manifold.png", "progression_latents.png", "curves.png",
                 "latents_final.png", "reconstructions_final.png"):
        assert (report / name).is_file(), name
    index = (report / "index.html").read_text()
    assert "at epochs 0, 2, 4" in index and "reconstruction (recon_loss)" in index
    with Image.open(report / "progression_manifold.png") as strip:
        assert strip.width > 3 * 240 and 240 < strip.height < 300  # three square grids side by side, 240 px high
    # chosen epochs: the nearest saved grid to each
    out = run_cli(["report", "vae", "--epochs", "1,4", "-o", "chosen"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "at epochs 0, 4 (" in (tmp_path / "chosen" / "index.html").read_text()  # 1 -> 0 (nearest, earlier)
    out = run_here(["report", "vae", "--epochs", "one"], tmp_path)
    assert out.returncode == 2 and "--epochs must be epoch numbers" in out.stderr


def test_pick_epochs_spreads_six_or_takes_the_nearest_wanted():
    from genlab.app.report import pick_epochs

    assert pick_epochs(list(range(52))) == [0, 10, 20, 31, 41, 51]
    assert pick_epochs([0, 10, 20, 30, 40], wanted=[0, 10, 20, 30, 40]) == [0, 10, 20, 30, 40]
    assert pick_epochs(list(range(0, 52, 5)), wanted=[1, 11, 21, 51]) == [0, 10, 20, 50]


def test_report_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in ((["empty"], "neither a run folder nor a multirun folder"), (["nowhere"], "is not a folder")):
        out = run_here(["report", *args], tmp_path)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
