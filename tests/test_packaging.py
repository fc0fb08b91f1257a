"""The sdist and the wheel, built as a user would build them, each installed alone in a fresh
environment: `tcplearn notebooks DIR` there copies the whole series (the notebooks and the pages
they link to) and says how to open it with what that environment has."""

import ast
import importlib.util
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
PAGES = ("glossary.md", "references.md")  # tcplearn.series.LINKED_PAGES; setup.py copies the same

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def test_setup_py_ships_the_pages_the_series_copies():
    from tcplearn.series import LINKED_PAGES

    assert tuple(LINKED_PAGES) == PAGES
    assert all((ROOT / "notebooks" / page).exists() for page in PAGES)
    tree = ast.parse((ROOT / "setup.py").read_text())
    shipped = [ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["LINKED_PAGES"]]
    assert shipped == [PAGES], "setup.py's LINKED_PAGES must match tcplearn.series.LINKED_PAGES"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``python -m build``: the sdist, then the wheel built *from that sdist*, as PyPI's users get them."""
    spec = importlib.util.find_spec("build")
    if spec is None or spec.origin is None:  # absent, or only a build/ folder seen as a namespace
        pytest.skip("needs the 'build' package (pip install build), which the test extra should list")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    (sdist,) = out.glob("tcplearn-*.tar.gz")
    (wheel,) = out.glob("tcplearn-*.whl")
    return sdist, wheel


def test_the_sdist_carries_the_series(built):
    sdist, _ = built
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for page in [*SHIPPED, *PAGES]:
        assert f"notebooks/{page}" in names, page
    assert {"setup.py", "pyproject.toml", "README.md"} <= names
    assert any(n.startswith("tcplearn/recordings/") and n.endswith(".json") for n in names)
    assert any(n.startswith("tcplearn/js/") and n.endswith(".js") for n in names)


def test_the_wheel_built_from_the_sdist_carries_the_series(built):
    _, wheel = built
    names = set(zipfile.ZipFile(wheel).namelist())
    for page in [*SHIPPED, *PAGES]:
        assert f"tcplearn/series/{page}" in names, page


def _fresh_env(where: Path) -> Path:
    """A new virtual environment with pip and nothing else; its Python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin" / "python"


def _install_alone_and_copy(artifact: Path, tmp_path: Path) -> str:
    """Install ``artifact`` with --no-deps in a fresh environment, run its ``tcplearn notebooks``,
    check what it copied, and return what it printed."""
    python = _fresh_env(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(artifact)], env=env, cwd=tmp_path)
    where = _run([str(python), "-c", "import tcplearn; print(tcplearn.__file__)"], env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(tmp_path / "env")), "the installed copy, not the checkout"
    script = tmp_path / "env" / "bin" / "tcplearn"
    usage = _run([str(script), "--help"], env=env, cwd=tmp_path).stdout
    assert usage.startswith("usage: tcplearn ") and "\n  tcplearn notebooks DIR" in usage, usage
    dest = tmp_path / "series"
    out = _run([str(script), "notebooks", str(dest)], env=env, cwd=tmp_path)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SHIPPED, *PAGES])
    for page in [*SHIPPED, *PAGES]:
        assert (dest / page).read_bytes() == (ROOT / "notebooks" / page).read_bytes(), page
    return out.stdout


def _says_how_to_get_jupyterlab(printed: str) -> None:
    # This environment has tcplearn alone: no JupyterLab, so the hint names the extra that brings it.
    assert "pip install 'tcplearn[notebooks]'" in printed, printed
    assert f"Copied {len(SHIPPED)} notebooks, glossary.md and references.md" in printed, printed


def test_the_wheel_installs_alone_and_copies_the_series(built, tmp_path):
    _, wheel = built
    _says_how_to_get_jupyterlab(_install_alone_and_copy(wheel, tmp_path))


def test_the_sdist_installs_alone_and_copies_the_series(built, tmp_path):
    sdist, _ = built
    _says_how_to_get_jupyterlab(_install_alone_and_copy(sdist, tmp_path))
