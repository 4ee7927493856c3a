"""`pip install .` must give a working genlab with the Hydra configs inside the wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_configs_and_uses_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "dist")],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("genlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    repo_configs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    assert repo_configs and all(f"genlab/{name}" in names for name in repo_configs)

    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([sys.executable, "-c", "import genlab.core.paths as p; print(p.config_dir())"],
                           cwd=empty, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(tmp_path / "site" / "genlab" / "configs")
    show = subprocess.run([sys.executable, "-m", "genlab", "config", "show", "model=vae"], cwd=empty, env=env,
                          capture_output=True, text=True)
    assert show.returncode == 0, show.stderr
    assert "latent_dim" in show.stdout
