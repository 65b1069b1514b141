"""The code's shape, checked: no import cycles, small files, plugins apart from each other.

The import graph is read from the source with ``ast``: every ``import`` and ``from ... import``
anywhere in a module (function-level imports too, since they run as soon as the function does),
except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_LIMIT = 450
TEST_LIMIT = 700


def _modules() -> dict[str, Path]:
    """Every module of embctl/ and plugins/, by dotted name."""
    found = {}
    for base, top in ((ROOT, ROOT / "embctl"), *((ROOT / "plugins", p) for p in
                                                  sorted((ROOT / "plugins").iterdir()))):
        if not (top / "__init__.py").exists():
            continue
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports when it runs."""
    out: set[str] = set()

    def target(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(target(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else target(base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(None)
    out.discard(name)
    return out  # type: ignore[return-value]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", modules)
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_level_imports():
    tree = ast.parse("def f():\n    from embctl.refs import parse_ref\n")
    assert _imports(tree, "embctl.x", False, _modules()) == {"embctl.refs"}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_plugin_imports_another_and_the_core_imports_no_plugin():
    graph = import_graph()
    plugins = {name.split(".")[0] for name in graph} - {"embctl"}
    bad = []
    for name, deps in graph.items():
        top = name.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other in plugins and other != top:
                bad.append(f"{name} -> {dep}")
    assert bad == []


# -- embctl.plugin: the plugins' one door into embctl ----------------------------------------

def _past_the_door(tree: ast.AST) -> list[int]:
    """Lines importing embctl other than through ``embctl.plugin`` (TYPE_CHECKING too: the
    types a plugin names are part of what it may use)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = ([f"embctl.{a.name}" for a in node.names] if node.module == "embctl"
                     else [node.module])
        else:
            continue
        if any(n.split(".")[0] == "embctl" and n != "embctl.plugin" for n in names):
            lines.append(node.lineno)
    return lines


def test_plugins_import_embctl_only_through_embctl_plugin():
    found = []
    for folder in (ROOT / "plugins", ROOT / "tests" / "support" / "plugin_pkg"):
        for path in sorted(folder.rglob("*.py")):
            found += [f"{path.relative_to(ROOT)}:{n}"
                      for n in _past_the_door(ast.parse(path.read_text()))]
    assert found == []
    assert _past_the_door(ast.parse(
        "import embctl\nimport embctl.paths\nfrom embctl import load\n"
        "def f():\n    from embctl.models.hub import repo_dir\n"
        "from embctl.plugin import Backend\nfrom embctl import plugin\nimport embctl_st\n"
    )) == [1, 2, 3, 5]


def test_embctl_plugin_names_are_importable_documented_and_typed():
    import embctl.plugin as door

    doc = door.__doc__ or ""
    listed = re.findall(r"^    (\w+) {2,}\S", doc, re.M)  # "    name   what it is"
    assert len(door.__all__) == len(set(door.__all__)) and sorted(listed) == sorted(door.__all__)
    missing = [n for n in door.__all__ if getattr(door, n, None) is None]
    assert missing == []
    # the lazy names' homes agree with the TYPE_CHECKING imports editors and checkers read
    tree = ast.parse((ROOT / "embctl" / "plugin.py").read_text())
    typed = {a.name: n.module for node in tree.body if isinstance(node, ast.If)
             and _is_type_checking(node) for n in node.body for a in n.names}
    assert typed == door._HOME
    with pytest.raises(AttributeError, match="no attribute 'read_ref'"):
        door.read_ref  # noqa: B018


def test_the_core_does_not_import_embctl_plugin():
    """embctl.plugin is the plugins' door, not a hub the core goes through."""
    assert [name for name, deps in import_graph().items()
            if name.split(".")[0] == "embctl" and "embctl.plugin" in deps] == []


def test_files_are_small():
    big = []
    for folder, limit in (("embctl", SOURCE_LIMIT), ("plugins", SOURCE_LIMIT),
                          ("tests", TEST_LIMIT)):
        for path in (ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > limit:
                big.append(f"{path.relative_to(ROOT)}: {lines} > {limit}")
    assert big == []


# -- the test tiers (docs/testing.md) ---------------------------------------------------------

def _starts_embctl(tree: ast.AST) -> list[int]:
    """Lines that spell ``python -m embctl`` in code: ``"-m", "embctl"`` in a list or tuple,
    or ``-m embctl`` in a string that is not a docstring."""
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if any(a == "-m" and b == "embctl" for a, b in zip(values, values[1:], strict=False)):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and re.search(r"-m embctl\b", node.value)):
            lines.append(node.lineno)
    return lines


def test_only_the_runner_spells_python_m_embctl():
    """Every ``python -m embctl`` a test starts goes through tests/support/runner.py, whose
    `require_e2e` refuses it outside the e2e tier."""
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path in (ROOT / "tests" / "support" / "runner.py", Path(__file__).resolve()):
            continue  # the runner itself, and this test's own examples below
        found += [f"{path.relative_to(ROOT)}:{n}" for n in _starts_embctl(ast.parse(
            path.read_text()))]
    assert found == []
    assert _starts_embctl(ast.parse('x = [sys.executable, "-m", "embctl", "ls"]')) == [1]
    assert _starts_embctl(ast.parse('x = f"{sys.executable} -m embctl ls | head"')) == [1]
    assert _starts_embctl(ast.parse('"""Runs python -m embctl."""')) == []


def test_a_test_outside_e2e_cannot_start_embctl(tmp_path):
    from support.runner import Embctl, embctl_argv

    run = Embctl.at(tmp_path)
    for start in (lambda: run.process("--help"), lambda: run.popen("--help"),
                  lambda: embctl_argv("--help")):
        with pytest.raises(AssertionError, match="mark it @pytest.mark.e2e"):
            start()
    assert run("--help").returncode == 0  # in-process: allowed


@pytest.mark.e2e
def test_an_e2e_test_may(tmp_path):
    from support.runner import Embctl

    proc = Embctl.at(tmp_path).process("--help")
    assert proc.returncode == 0 and "Usage: embctl" in proc.stdout
