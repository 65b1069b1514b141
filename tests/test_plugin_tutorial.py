"""docs/plugin-tutorial.md as it stands: every code block titled with a path is written into an
empty folder, the package is installed the way pip installs it (a dist-info with its entry
points, from the doc's own pyproject.toml), the doc's own test runs, and every ``$ embctl ...``
line of its console blocks runs in-process, its exit code and the output shown checked."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
import tomllib
from pathlib import Path

from support.runner import Embctl
from test_layout import _past_the_door

DOC = Path(__file__).parents[1] / "docs" / "plugin-tutorial.md"
FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```\n', re.S | re.M)
#: Console commands the test does its own way: installing (a dist-info), running the tests.
NOT_RUN = ("pip", "python")


def files(doc: str) -> dict[str, str]:
    return {title: body for _, title, body in FENCE.findall(doc) if title}


def consoles(doc: str) -> list[tuple[str, list[str]]]:
    """Every ``$ command`` of the console blocks, with the output lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    for lang, _, body in FENCE.findall(doc):
        for line in body.splitlines() if lang == "console" else ():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def install(folder: Path) -> Path:
    """The dist-info ``pip install`` writes, from the doc's pyproject.toml."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    dist = folder / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["embctl"].items())
    (dist / "entry_points.txt").write_text(f"[embctl]\n{points}")
    return dist.parent


def shown(line: str) -> re.Pattern[str]:
    """A line shown in the doc as a pattern: ``...`` is anything, runs of spaces are spaces."""
    parts = [r"\s+".join(map(re.escape, p.split())) for p in line.split("...")]
    return re.compile(r"\s*" + ".*".join(parts) + r"\s*")


def run_doc(doc: str, folder: Path, base: Embctl) -> list[str]:
    """Extract, install and run the tutorial in ``folder``; the problems found ([]: none)."""
    for rel, body in files(doc).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(body)
    run = Embctl({**base.env, "PYTHONPATH": f"{install(folder)}:{folder}"}, base.home)
    problems = [f"{p}:{n} imports embctl past embctl.plugin"
                for p in sorted(files(doc)) if p.startswith("embctl_hashing/")
                for n in _past_the_door(ast.parse((folder / p).read_text()))]
    problems += run_plugin_tests(folder)
    last = None
    for command, output in consoles(doc):
        argv = shlex.split(command, comments=True)
        if argv == ["echo", "$?"]:
            if last is None or [str(last.returncode)] != output:
                problems.append(f"{command}: shown {output}, was {last and last.returncode}")
            continue
        if argv[0] in NOT_RUN:
            continue
        stdin = None
        if "|" in argv:
            assert argv[0] == "echo" and argv.index("|") == 2, command
            stdin, argv = argv[1] + "\n", argv[3:]
        if "<" in argv:
            stdin = (folder / argv[argv.index("<") + 1]).read_text()
            argv = argv[:argv.index("<")]
        assert argv[0] == "embctl", f"the test cannot run {command!r}"
        last = run(*argv[1:], input=stdin)
        failed = any(line.startswith("embctl: error:") for line in output)
        if (last.returncode != 0) != failed:
            problems.append(f"{command}: exit {last.returncode}\n{last.stderr}")
        got = (last.stdout + last.stderr).splitlines()
        problems += [f"{command}: shown {line!r}, not in:\n{last.stdout}{last.stderr}"
                     for line in output if line.strip() not in ("", "...")
                     and not any(shown(line).fullmatch(g) for g in got)]
    return problems


def run_plugin_tests(folder: Path) -> list[str]:
    """The doc's own tests/test_*.py, each ``test_`` function called (they take no fixtures)."""
    problems = []
    sys.path.insert(0, str(folder))
    try:
        for path in sorted(folder.glob("tests/test_*.py")):
            spec = importlib.util.spec_from_file_location(f"tutorial_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for name in [n for n in vars(module) if n.startswith("test_")]:
                try:
                    getattr(module, name)()
                except Exception as exc:  # noqa: BLE001 - a failing doc test is a problem found
                    problems.append(f"{path.name}::{name}: {exc!r}")
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] == "embctl_hashing"]:
            del sys.modules[name]
    return problems


def test_the_tutorial_runs_as_written(tmp_path, embctl):
    doc = DOC.read_text()
    assert set(files(doc)) == {"pyproject.toml", "embctl_hashing/__init__.py",
                               "embctl_hashing/embedder.py", "tests/test_hashing.py",
                               "docs.jsonl"}
    commands = [c.split()[1] for c, _ in consoles(doc) if c.startswith("embctl")]
    assert {"plugins", "embed", "pull", "ls", "rm"} <= set(commands)
    assert run_doc(doc, tmp_path / "pkg", embctl) == []
    assert not list((embctl.home / "embctl" / "vectors").glob("*.sqlite"))  # rm ran


def test_a_drifted_tutorial_fails(tmp_path, embctl):
    """The code changed under its shown output (the sign of each word flipped): found."""
    doc = DOC.read_text()
    line = "out[row, h % self.dim] += 1.0 if h >> 63 else -1.0"
    assert line in doc
    drifted = doc.replace(line, line.replace("1.0 if", "-1.0 if").replace("else -1.0", "else 1.0"))
    problems = run_doc(drifted, tmp_path / "pkg", embctl)
    assert problems and all("embed bow -O dim=8" in p for p in problems), problems
