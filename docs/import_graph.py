"""Draws tcplearn's import graph from the code, for docs/architecture.md.

    python docs/import_graph.py          # print the Mermaid diagram
    python docs/import_graph.py --write  # refresh it inside docs/architecture.md

Standard library only (``ast``): every ``import`` in every module of ``tcplearn``, imports
inside functions included.  The subpackages ``observe`` and ``lab`` are drawn as one box
each.  tests/test_architecture.py checks that the diagram in architecture.md is this one,
and that the graph has no cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tcplearn"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- import graph: begin (python docs/import_graph.py --write) -->"
END = "<!-- import graph: end -->"
LAYERS = (("top", "the public API, the recorder, doctor, the command line"), ("view", "tcplearn.view"),
          ("experiments", "tcplearn.experiments"), ("base", "tcplearn.base"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every tcplearn module -> the tcplearn modules it imports (``from . import x`` counts as
    importing ``x`` when ``x`` is a module, else the package itself)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("tcplearn"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in modules else target)
        edges.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _box(module: str) -> str:
    """The box a module is drawn in: subpackages of base collapse into one box each."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "base" and parts[2] in ("observe", "lab"):
        return ".".join(parts[:3])
    return module


def _layer(box: str) -> str:
    parts = box.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("base", "experiments", "view") else "top"


def mermaid() -> str:
    """The import graph as a Mermaid flowchart, one subgraph per layer (the package
    ``__init__`` files only re-export, so their arrows are left out to keep it readable)."""
    graph = import_graph()
    boxes: dict[str, set[str]] = {}
    for module, edges in graph.items():
        if module in ("tcplearn.base", "tcplearn.experiments", "tcplearn.view"):
            continue
        if module == "tcplearn":  # re-exports everything: its arrows would hide the rest
            boxes.setdefault(module, set())
            continue
        src = _box(module)
        boxes.setdefault(src, set())
        for target in edges:
            dst = _box(target)
            layers = ("tcplearn.base", "tcplearn.experiments", "tcplearn.view", "tcplearn")
            if dst != src and dst not in layers:
                boxes[src].add(dst)

    def ident(box: str) -> str:
        return box.replace(".", "_")

    def label(box: str) -> str:
        return box.removeprefix("tcplearn.").replace("base.", "").replace("experiments.", "").replace(
            "view.", "") or "tcplearn"

    lines = ["```mermaid", "flowchart TD"]
    for layer, title in LAYERS:
        members = sorted(b for b in boxes if _layer(b) == layer)
        lines.append(f'  subgraph {layer}["{title}"]')
        lines += [f'    {ident(b)}["{label(b)}"]' for b in members]
        lines.append("  end")
    for src in sorted(boxes):
        for dst in sorted(boxes[src]):
            lines.append(f"  {ident(src)} --> {ident(dst)}")
    lines.append("```")
    return "\n".join(lines)


def write() -> None:
    """Replace the diagram between the markers in docs/architecture.md."""
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{mermaid()}\n{END}{tail}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(mermaid())
