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


# ---- the layers: import-linter's contracts, no circles, no hidden imports ------------------------------------

FUNCTION_IMPORTS = {  # the only genlab imports inside functions, each with its reason (docs/architecture.md)
    ("genlab/app/cli.py", "_command"): "a command's module is imported when it runs: --help and TAB load no torch",
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of pyproject.toml, over the genlab package under `root`."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})


def test_imports_run_down_the_layers():
    pytest.importorskip("importlinter", reason="import-linter is installed by the test extra (pip install -e .[test])")
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in out.stdout, out.stdout[-2000:]


def test_an_upward_import_breaks_the_contracts(tmp_path):
    """The check above can fail: a copy of the package where a model file imports the evaluation layer."""
    pytest.importorskip("importlinter", reason="import-linter is installed by the test extra (pip install -e .[test])")
    shutil.copytree(ROOT / "genlab", tmp_path / "genlab", ignore=shutil.ignore_patterns("__pycache__", "configs"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    gan = tmp_path / "genlab" / "models" / "gan.py"
    gan.write_text(gan.read_text().replace("from __future__ import annotations\n",
                                           "from __future__ import annotations\n\nimport genlab.eval.store\n", 1))
    out = _lint_imports(tmp_path)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "genlab.models.gan -> genlab.eval.store" in out.stdout and "BROKEN" in out.stdout, out.stdout[-3000:]


def _graph():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")
    return grimp.build_graph("genlab", include_external_packages=False)


def test_no_import_circle_among_genlab_modules():
    graph = _graph()
    circles = [(a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
               if a != b and graph.chain_exists(importer=b, imported=a)]
    assert not circles, f"{len(circles)} imports close a circle, e.g. {circles[:3]}"


def _functions():
    import ast

    for path in sorted((ROOT / "genlab").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT).as_posix(), node


def test_no_genlab_import_inside_a_function_but_the_listed_ones():
    import ast

    found = {}
    for path, fn in _functions():
        for node in ast.walk(fn):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            call = ast.unparse(node) if isinstance(node, ast.Call) else ""
            if any(n == "genlab" or n.startswith("genlab.") for n in names) or \
                    ("import_module" in call and "genlab" in call):
                found[(path, fn.name)] = ast.unparse(node)
    assert set(found) == set(FUNCTION_IMPORTS), {k: v for k, v in found.items() if k not in FUNCTION_IMPORTS}


def test_functions_and_modules_stay_short():
    long = [f"{path}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)" for path, fn in _functions()
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]
    big = [f"{p.relative_to(ROOT)} ({n} lines)" for p in (ROOT / "genlab").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long and not big, long + big


def test_the_typer_module_only_declares_commands():
    """genlab/app/cli.py: each function is a command (or the root callback) whose body hands its arguments to its
    command module, or the loader of those modules."""
    import ast

    tree = ast.parse((ROOT / "genlab" / "app" / "cli.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name not in ("_command", "_root"):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            assert node.decorator_list, f"{node.name} is no command"
            assert len(body) == 1 and "_command(" in ast.unparse(body[0]), f"{node.name} holds logic"


def test_every_module_imports():
    """Each module of the package imports by itself (a command's module is otherwise first imported when it runs)."""
    import importlib
    import pkgutil

    import genlab

    names = [m.name for m in pkgutil.walk_packages(genlab.__path__, "genlab.") if not m.name.endswith("__main__")]
    assert len(names) > 60
    for name in names:
        importlib.import_module(name)
