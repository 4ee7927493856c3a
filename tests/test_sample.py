"""`genlab sample`: new images from a run's checkpoint alone."""

import shutil

import numpy as np
from PIL import Image

from tests.conftest import run_cli
from tests.hostile import run_here  # the same main() in this process: the error lines without a new interpreter


def _folder_of_images(root, n=40):
    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(n // 2):
            pixels = rng.integers(0, 60, (20, 20, 3)) + 150 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


def test_sample_needs_only_the_checkpoint(tmp_path):
    data = tmp_path / "faces"
    _folder_of_images(data)
    out = run_cli(["train", "model=cgan", "data=image_folder", f"data.root={data}", "data.size=16",
                   "data.num_workers=0", "train.batch_size=8", "train.steps=2", "model.g_width=32", "model.d_width=8",
                   "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 0, out.stderr
    shutil.rmtree(data)  # the dataset is gone; the run folder alone must do
    shutil.rmtree(tmp_path / "run" / ".hydra")

    out = run_cli(["sample", "run", "-n", "12", "--labels", "1"], tmp_path)
    assert out.returncode == 0, out.stderr
    grid = Image.open(tmp_path / "run" / "generated" / "samples_n12_seed0.png")
    assert grid.size == (2 + 8 * 18, 2 + 2 * 18) and grid.mode == "RGB"  # 12 images of 16x16, rows of 8

    out = run_here(["sample", "run/checkpoints/last.pt", "-n", "30", "--labels", "0,1", "-o", "many"], tmp_path)
    assert out.returncode == 0, out.stderr
    files = sorted((tmp_path / "many").iterdir())
    assert len(files) == 30 and files[0].name == "000000_class0.png" and files[1].name == "000001_class1.png"
    assert Image.open(files[0]).size == (16, 16)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".many")]  # no staging folder left behind

    for args, message in (
        (["run", "--labels", "2"], "out of range"),
        (["run", "--labels", "x"], "class numbers separated by commas"),
        (["run", "-o", "many"], "not an empty folder"),
        (["run", "-o", "grid.jpg"], "a .png file or a folder"),
        (["elsewhere"], "no run folder or checkpoint"),
    ):
        out = run_here(["sample", *args], tmp_path)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    assert len(list((tmp_path / "many").iterdir())) == 30  # the refused command left the folder alone


def test_sample_seeds_and_an_unconditional_model(tmp_path, train):
    train(tmp_path / "vae", "model=vae", "data.limit=64", "train.batch_size=32", "train.steps=2")
    # the same seed gives the same images; another seed others
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run_here(["sample", "vae", "-n", "4", "--seed", str(seed), "-o", f"{name}.png"], tmp_path).returncode == 0
    a, b, c = (np.asarray(Image.open(tmp_path / f"{x}.png")) for x in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    out = run_here(["sample", "vae", "--labels", "1"], tmp_path)
    assert out.returncode == 2 and "takes no labels" in out.stderr
