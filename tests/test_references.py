"""Every source a learner is pointed to can be opened: no citation of a sheet learners do not have,
every link into the references page lands on an entry, and every entry says where to find it."""

import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
REFERENCES = ROOT / "notebooks" / "references.md"

#: A citation of the project's internal facts sheet: "facts L5", "facts N3-N5", "tcplearn facts P4",
#: "facts S1/L8", "(facts, misconception 6)", "tcp-facts.md", or a bare sheet id in parentheses: "(L5)",
#: "(K1, K3)".  The sheet's ids are a letter and one or two digits.
SHEET = re.compile(
    r"\bfacts\W{0,3}(?:[A-Z]\d{1,2}\b|misconception)"
    r"|tcp-facts"
    r"|\((?:[A-Z]\d{1,2})(?:\s*[,/–-]\s*[A-Z]?\d{1,2})*\)"
)
ANCHOR = re.compile(r'<a id="([a-z0-9-]+)"></a>')
LINK = re.compile(r"\]\((?:\.\./notebooks/|notebooks/)?references\.md(?:#([a-z0-9-]*))?\)")


def _notebook_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells)


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a Python file (docstrings included), with its line: what a learner
    sees through help(), a printed note or a figure.  Comments are not strings."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [(tok.start[0], tok.string) for tok in tokens if tok.type == tokenize.STRING]


def learner_facing() -> list[tuple[str, str]]:
    """(where, text) for every text a learner reads: the notebooks, their pages, the docs, the README,
    and tcplearn's strings, recordings and scripts."""
    texts = [(p.name, _notebook_text(p)) for p in NOTEBOOKS]
    texts += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "notebooks").glob("*.md"))]
    texts += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "docs").rglob("*.md"))]
    texts.append(("README.md", (ROOT / "README.md").read_text()))
    for path in sorted((ROOT / "tcplearn").rglob("*.py")):
        texts += [(f"{path.relative_to(ROOT)}:{line}", s) for line, s in _strings(path)]
    for path in sorted((ROOT / "tcplearn").rglob("*.json")) + sorted((ROOT / "tcplearn").rglob("*.js")):
        texts.append((str(path.relative_to(ROOT)), path.read_text()))
    return texts


def test_the_pattern_catches_what_it_must_and_spares_the_rest():
    for cited in ("(facts L5)", "facts K4", "tcplearn facts P4", "facts N3-N5", "facts S1/L8",
                  "(facts, misconception 6)", "`tcp-facts.md` L20", "(L5)", "(K1, K3)", "(N3-N5)"):
        assert SHEET.search(cited), cited
    for fine in ("RFC 9293 §3.6.1 (MUST-13)", "SHLD-3", "compiled-in facts", "(section 3)",
                 "`tcp_max_tw_buckets`",
                 "IPv6", "(notebook 04)", "facts that the kernel reports"):
        assert not SHEET.search(fine), fine


def test_no_text_cites_the_internal_facts_sheet():
    found = [f"{where}: {m.group(0)!r}" for where, text in learner_facing() for m in SHEET.finditer(text)]
    assert not found, "cite the real source (see notebooks/references.md) instead of:\n" + "\n".join(found)


def _entries() -> dict[str, str]:
    """Anchor -> the entry's text, up to the next anchor or heading."""
    text = REFERENCES.read_text()
    marks = list(ANCHOR.finditer(text))
    entries = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end():end].split("\n## ", 1)[0]
        assert mark.group(1) not in entries, f"anchor {mark.group(1)} twice in references.md"
        entries[mark.group(1)] = body
    return entries


def test_every_reference_says_where_to_find_it():
    entries = _entries()
    assert len(entries) >= 20
    for anchor, body in entries.items():
        url = re.search(r"https?://[^\s)>]+", body)
        book = re.search(r"ISBN [0-9-]{13,17}", body) and re.search(r"§\s?\d", body)
        assert url or book, f"references.md#{anchor}: no URL, and not a book with its ISBN and section"
        assert len(body.strip()) > 40, f"references.md#{anchor} says nothing about the source"


def _documents() -> list[tuple[str, str]]:
    docs = [(p.name, _notebook_text(p)) for p in NOTEBOOKS]
    docs += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "notebooks").glob("*.md"))]
    docs += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "docs").rglob("*.md"))]
    return docs + [("README.md", (ROOT / "README.md").read_text())]


def test_every_link_to_the_references_lands_on_an_entry():
    anchors = set(_entries())
    used = [(where, m.group(1)) for where, text in _documents() for m in LINK.finditer(text)]
    assert used
    missing = [f"{where}: references.md#{a}" for where, a in used if a and a not in anchors]
    assert not missing, "links to entries that references.md does not have:\n" + "\n".join(missing)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_links_the_references(path):
    assert re.search(r"\]\(references\.md\)", _notebook_text(path)), \
        f"{path.name} does not link references.md"


def test_the_glossary_links_the_references():
    assert "](references.md)" in (ROOT / "notebooks" / "glossary.md").read_text()


def test_the_seed_is_cited_where_it_is_first_quoted():
    """Notebook 02 quotes the seed first: there it is named by title, site and date,
    and the entry holds its URL."""
    seed = _entries()["seed"]
    assert ("TCP 协议的 time_wait 超时时间" in seed and "2024" in seed
            and "blog.huangque888.com/archives/41409" in seed)
    md = _notebook_text(ROOT / "notebooks" / "02-time-wait-and-2msl.ipynb")
    first = md.index("这在很多Linux版本中代表time_wait超时时间")
    before = md[:first]
    assert "](references.md#seed)" in before and "27 August 2024" in before


def test_notebook_03_quotes_the_seeds_python_as_it_stands():
    """The seed sets the timeout, then connects; it never calls create_connection."""
    md = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / "03-timeouts-python-vs-node.ipynb",
                                                    as_version=4).cells if c.cell_type == "markdown")
    assert "s.settimeout(10)" in md and "s.connect(('www.example.com', 80))" in md
    assert md.index("s.settimeout(10)") < md.index("s.connect(('www.example.com', 80))")
    assert not re.search(r"seed's[^.]*create_connection", md), "create_connection is not the seed's code"



BINDER = re.compile(r"https://mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/([^?\s]+)\?urlpath=lab/tree/([^)\s`]+)")


def test_the_binder_links_open_a_file_of_the_repository():
    """The badge (and teaching.md's launch link) open 00 in JupyterLab:
    the path after lab/tree/ exists here."""
    readme = (ROOT / "README.md").read_text()
    links = [(where, m) for where, text in (("README.md", readme),
                                             ("docs/teaching.md",
                                              (ROOT / "docs" / "teaching.md").read_text()))
             for m in BINDER.finditer(text)]
    assert "[![Binder]" in readme and any(where == "README.md" for where, _ in links), "the README's badge"
    for where, m in links:
        path = m.group(3)
        assert (ROOT / path).is_file(), f"{where}: lab/tree/{path} names no file of the repository"
        assert path == "notebooks/00-start-here.ipynb", f"{where}: the class starts at 00, not {path}"
    if any(m.group(1) == "OWNER/REPO" for _, m in links):
        # a placeholder until there is a public repository: the README says how a fork fills it in
        assert "sed -i 's#OWNER/REPO#" in readme and "mybinder.org" in readme
