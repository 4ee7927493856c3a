"""The house rules the default test run enforces: the code is clean under ruff (pyproject.toml's [tool.ruff])."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    try:
        import ruff  # noqa: F401  (installed by the test extra: its binary sits beside the interpreter)
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed: pip install -e '.[test]'")
        return ["ruff"]
    return [sys.executable, "-m", "ruff"]


def test_the_code_is_clean_under_ruff():
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_fails_on_a_file_that_breaks_a_rule(tmp_path):
    """The check above can fail: the same configuration on a file with an unsorted import block and an unused name."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\n\ndef f():\n    x = 1\n    return os.sep\n")
    out = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "--config",
                          str(ROOT / "pyproject.toml"), str(bad)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert "I001" in out.stdout and "F401" in out.stdout and "F841" in out.stdout, out.stdout
