"""embctl's own entry-point reader (embctl/entrypoints.py) agrees with importlib.metadata."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMPARE = """
import sys
from importlib.metadata import entry_points
from embctl import entrypoints
for group in sys.argv[1:]:
    ours = sorted((e.name, e.value, e.version) for e in entrypoints.find(group))
    ref = sorted((e.name, e.value, e.dist.version if e.dist else None)
                 for e in entry_points(group=group))
    print(group, len(ours), ours == ref, ours if ours != ref else "")
"""


@pytest.mark.parametrize("cwd", [ROOT, ROOT / "tests"], ids=["repo-root", "elsewhere"])
def test_the_reader_finds_what_importlib_metadata_finds(cwd, tmp_path):
    """From the repo root too, where an editable build's ``embctl.egg-info`` (no version in its
    name) comes first on sys.path; and with a plugin installed the way test_plugins installs
    one (a dist-info folder on PYTHONPATH)."""
    site = tmp_path / "site"
    dist = site / "embctl_extra-2.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: embctl-extra\nVersion: 2.5\n")
    (dist / "entry_points.txt").write_text("[embctl]\nextra = embctl_extra:plugin\n")
    env = {"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", COMPARE, "embctl", "console_scripts",
                           "pytest11"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" ", 3) for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["embctl", "console_scripts", "pytest11"]
    assert all(r[2] == "True" for r in rows), proc.stdout
    assert int(rows[0][1]) == 6  # st, openai, matrix, image, onnx and the extra one
