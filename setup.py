"""Packaging glue that pyproject.toml cannot say: the wheel carries the notebook series.

The notebooks live in ``notebooks/`` at the top of the repository (where JupyterLab,
Binder and ``dev.py lab`` open them); building copies them, and the pages they link to, into
``tcplearn/series/`` of the built package, so ``pip install tcplearn`` then ``tcplearn notebooks DIR``
has them.  An sdist carries ``notebooks/`` too (``MANIFEST.in``), so a wheel built from it does.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: The pages the notebooks link to; tcplearn.series.LINKED_PAGES copies the same ones.
LINKED_PAGES = ("glossary.md", "references.md")


class BuildWithSeries(build_py):
    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "notebooks"
        target = Path(self.build_lib) / "tcplearn" / "series"
        target.mkdir(parents=True, exist_ok=True)
        for page in sorted([*source.glob("[0-9][0-9]-*.ipynb"), *(source / name for name in LINKED_PAGES)]):
            shutil.copyfile(page, target / page.name)


setup(cmdclass={"build_py": BuildWithSeries})
