"""The package's shape: no import cycles, Slack kept at the edge.

Counted from the source, module-level imports only, `if TYPE_CHECKING:` blocks included:
a cycle hidden behind TYPE_CHECKING is still two modules that can't be understood apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "marvin"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                out.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
                out.update(f"{node.module}.{alias.name}" for alias in node.names)

    visit(ast.parse(path.read_text()).body)
    return {name for name in out if name in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    stack: list[str] = []
    seen: set[str] = set()

    def walk(node: str) -> list[str] | None:
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                return [*stack, nxt]
            if nxt not in seen:
                seen.add(nxt)
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        return None

    return walk(start)


def test_no_module_imports_itself_through_others() -> None:
    cycles = [c for name in sorted(GRAPH) if (c := _cycle_from(name))]
    assert cycles == [], " | ".join(" -> ".join(c) for c in cycles[:5])


def test_the_core_does_not_know_slack() -> None:
    core = [n for n in MODULES if not n.startswith(("marvin.slack", "marvin.cli"))]
    leaks = {n: sorted(i for i in GRAPH[n] if i.startswith("marvin.slack")) for n in core}
    assert {n: i for n, i in leaks.items() if i} == {}
    for name in core:
        assert "slack_sdk" not in MODULES[name].read_text() or name == "marvin.config", name
