"""Plugins: discovery through the entry-point group, third-party backends, broken plugins, and a
fast start that imports no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from support.hub import make_repo, resolve_gets
from support.runner import HEAVY_MODULES


def install_plugin(site: Path, name: str, module_source: str, version: str = "0.1") -> None:
    """Install a plugin the way pip would: a module plus a dist-info with entry points."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    dist = site / f"{name}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[embctl]\n{name} = {name}\n")


TOY = """
    from embctl.backends import Alias, Backend
    from embctl.hookspecs import hookimpl

    def select(paths):
        return [p for p in paths if p in ("config.json", "toy.bin")]

    @hookimpl
    def register_backends(register):
        register(Backend(name="toy", description="A toy backend", select_files=select))

    @hookimpl
    def register_aliases(register):
        register(Alias("toy-model", "toy:acme/toy-model", "A toy model", dim=8))
"""


def with_site(run, site: Path) -> dict:
    return {"PYTHONPATH": str(site)}


def test_builtin_plugin_listed(embctl):
    proc = embctl("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    st = plugins["st"]
    assert [b["name"] for b in st["backends"]] == ["st"]
    names = {a["name"]: a for a in st["aliases"]}
    assert {"all-MiniLM-L6-v2", "all-mpnet-base-v2", "bge-small-en-v1.5", "e5-small-v2"} <= set(
        names)
    assert names["all-MiniLM-L6-v2"]["dim"] == 384
    assert st["version"] and st["error"] is None


def test_third_party_plugin_registers_a_usable_backend(embctl, hub, hub_root, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "embctl_toy", TOY)
    env = with_site(embctl, site)
    proc = embctl("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    toy = {p["name"]: p for p in json.loads(proc.stdout)}["embctl_toy"]
    assert toy["version"] == "0.1"
    assert [b["name"] for b in toy["backends"]] == ["toy"]
    assert [a["name"] for a in toy["aliases"]] == ["toy-model"]
    make_repo(hub_root, "acme/toy-model",
              {"config.json": "{}", "toy.bin": b"t" * 5000, "big-unused.bin": b"u" * 50_000})
    proc = embctl("pull", "toy-model", env=env)
    assert proc.returncode == 0, proc.stderr
    assert set(resolve_gets(hub, "acme/toy-model")) == {"config.json", "toy.bin"}
    rows = json.loads(embctl("ls", "--json", env=env).stdout)
    assert [(r["ref"], r["backend"]) for r in rows] == [("toy-model", "toy")]


def test_a_broken_plugin_costs_one_warning(embctl, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "embctl_broken", "raise RuntimeError('boom at import')\n")
    install_plugin(site, "embctl_badhook", """
        from embctl.hookspecs import hookimpl

        @hookimpl
        def register_backends(register):
            raise ValueError('boom in hook')
    """)
    env = with_site(embctl, site)
    for args in (["ls"], ["du"], ["plugins"], ["pull", "--help"]):
        proc = embctl(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = embctl("plugins", "--json", env=env)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len([w for w in warnings if "embctl_broken" in w]) == 1
    assert len([w for w in warnings if "embctl_badhook" in w]) == 1
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert "boom at import" in plugins["embctl_broken"]["error"]
    assert "boom in hook" in plugins["embctl_badhook"]["error"]
    assert plugins["st"]["error"] is None


PROBE = """
import sys, runpy
sys.argv = ["embctl", *sys.argv[1:]]
try:
    runpy.run_module("embctl", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


def test_fast_commands_import_no_heavy_library(pulled):
    for args in (["--help"], ["ls"], ["ls", "--json"], ["du"], ["du", "--json"],
                 ["rm", "--help"], ["plugins"], ["pull", "--help"], ["embed", "--help"],
                 ["export", "--help"], ["rm", "nothing/here", "-y"], ["verify", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE.replace("{heavy!r}", repr(set(HEAVY_MODULES))),
             *args], env=pulled.env, capture_output=True, text=True, timeout=60)
        line = [x for x in proc.stderr.splitlines() if x.startswith("HEAVY:")]
        assert line == ["HEAVY:"], (args, proc.stderr)
