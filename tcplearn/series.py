"""The notebook series as shipped: where it is, and copying it where a learner can run it.

A wheel carries the notebooks and the pages they link to (the glossary, the references) in
``tcplearn/series/`` (``setup.py`` copies them there at build time); a source checkout has them in
``notebooks/`` beside the package.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["SeriesError", "LINKED_PAGES", "notebooks", "pages", "copy_series"]


class SeriesError(RuntimeError):
    """The series cannot be copied; ``str()`` says why and what to do."""


def _folder() -> Path:
    packaged = Path(str(resources.files("tcplearn") / "series"))
    if any(packaged.glob("*.ipynb")):
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "notebooks"
    if any(checkout.glob("*.ipynb")):
        return checkout
    raise SeriesError("this installation of tcplearn carries no notebooks (neither a wheel's tcplearn/series "
                      "nor a checkout's notebooks/ folder was found)")


def notebooks() -> list[Path]:
    """The series' notebooks, in order (00, 01, ...)."""
    return sorted(_folder().glob("[0-9][0-9]-*.ipynb"))


#: The pages the notebooks link to, copied with them.
LINKED_PAGES = ("glossary.md", "references.md")


def pages() -> list[Path]:
    """Everything a learner's copy needs: the notebooks, then the pages they link to
    (glossary, references)."""
    folder = _folder()
    return notebooks() + [folder / name for name in LINKED_PAGES if (folder / name).exists()]


def copy_series(directory: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy every notebook of the series and the pages they link to (glossary, references) into
    ``directory`` (created if missing) and return the paths there.  A copy that differs from the
    shipped file (a learner's edits) is never replaced unless ``overwrite=True``: ``SeriesError``
    names those files and nothing is copied.  An identical copy is left as it is."""
    dest = Path(directory).expanduser()
    if dest.exists() and not dest.is_dir():
        raise SeriesError(f"{dest} exists and is not a folder")
    sources = pages()
    edited = [dest / src.name for src in sources
              if (dest / src.name).exists() and (dest / src.name).read_bytes() != src.read_bytes()]
    if edited and not overwrite:
        raise SeriesError(f"{len(edited)} file(s) of the series in {dest} differ from the shipped ones (your "
                          f"edits?): {', '.join(p.name for p in edited)}; nothing was copied. Copy into "
                          "another folder, or pass --overwrite (overwrite=True) to replace them")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sources:
        target = dest / src.name
        if not target.exists() or target.read_bytes() != src.read_bytes():
            shutil.copyfile(src, target)
        copied.append(target)
    return copied
