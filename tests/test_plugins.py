"""Plugins: discovery through the entry-point group, third-party backends, broken plugins, and a
fast start that imports no heavy library."""

from __future__ import annotations

import ast
import json
import os
import textwrap
from pathlib import Path

import pytest
from support.hub import make_repo, resolve_gets
from support.runner import heavy_imports

from embctl.backends import Backend, Embedder, Model, Option
from embctl.errors import UsageError
from embctl.namespace import namespace_for
from embctl.options import check_options, format_backend_options, parse_options, with_defaults
from embctl.vectors.naming import namespace_id

PLUGINS = Path(__file__).parent.parent / "plugins"


def install_plugin(site: Path, name: str, module_source: str, version: str = "0.1") -> None:
    """Install a plugin the way pip would: a module plus a dist-info with entry points."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    dist = site / f"{name}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[embctl]\n{name} = {name}\n")


TOY = """
    from embctl.plugin import Alias, Backend, hookimpl

    class Toy(Backend):
        name = "toy"
        description = "A toy backend"

        def select_files(self, paths, options):
            return [p for p in paths if p in ("config.json", "toy.bin")]

    @hookimpl
    def register_backends(register):
        register(Toy())

    @hookimpl
    def register_aliases(register):
        register(Alias("toy-model", "toy:acme/toy-model", "A toy model", dim=8))
"""


def with_site(run, site: Path) -> dict:
    """``site`` first on the path, then the caller's (the checkout under test)."""
    return {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [
        os.environ.get("PYTHONPATH")])])}


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


@pytest.mark.e2e  # what a fresh interpreter imports
def test_fast_commands_import_no_heavy_library(pulled):
    for args in (["--help"], ["ls"], ["ls", "--json"], ["du"], ["du", "--json"],
                 ["rm", "--help"], ["plugins"], ["pull", "--help"], ["embed", "--help"],
                 ["export", "--help"], ["rm", "nothing/here", "-y"], ["verify", "--help"]):
        heavy, stderr = heavy_imports(pulled.env, *args)
        assert heavy == [], (args, stderr)


# -- the contract, in process ----------------------------------------------------------------


def test_no_plugin_imports_another():
    """Locating, pulling and device choice are core services: a plugin imports embctl and
    itself, never another plugin."""
    names = {p.name for p in PLUGINS.iterdir() if p.is_dir() and p.name.startswith("embctl_")}
    found = []
    for plugin in sorted(names):
        for path in (PLUGINS / plugin).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    continue
                found += [(path.name, m) for m in modules
                          if m.split(".")[0] in names - {plugin}]
    assert found == []


def test_builtin_embedders_subclass_the_contract():
    from embctl_image.embedder import ImageEmbedder
    from embctl_matrix.embedder import StaticEmbedder
    from embctl_openai.embedder import OpenAIEmbedder
    from embctl_st.model import STEmbedder

    for cls in (STEmbedder, ImageEmbedder, OpenAIEmbedder, StaticEmbedder):
        assert issubclass(cls, Embedder), cls
    # Matrix caches name the matrix by content, as they did before the core wrote identities.
    assert StaticEmbedder.namespace_identity is False


def test_builtin_namespaces_are_unchanged(tmp_path):
    """The namespaces of today's caches, byte for byte (their ids were computed before the core
    wrote backend/repo_id/revision): existing caches keep hitting."""
    from embctl_image.embedder import ImageEmbedder
    from embctl_openai.embedder import load as openai_load
    from embctl_st.model import STEmbedder

    (tmp_path / "config.json").write_text('{"hidden_sizes": [8, 16]}')
    (tmp_path / "preprocessor_config.json").write_text('{"size": {"height": 4, "width": 4}}')
    st = STEmbedder(Model("x", "st", "org/a"), tmp_path, "abc123",
                    {"normalize": True, "truncate_dim": 4})
    assert dict(st.params) == {"normalize": True, "truncate_dim": 4}
    assert namespace_id(namespace_for(st.model, st, prefix="q: ")) == \
        "c06a2898a290bfc5d57d867641f74075"
    api = openai_load(Model("openai:m", "openai", "m"),
                      {"dimensions": 8, "base_url": "http://h:1/v1"})
    assert namespace_id(namespace_for(api.model, api)) == "d80a98727dd292154cf6948648e9d9a5"
    image = ImageEmbedder(Model("image:org/i", "image", "org/i"), tmp_path, "def456",
                          {"image_range": "0:100"})
    ns = namespace_for(image.model, image, input_kind="image")
    assert namespace_id(ns) == "e2ed53614c06984eb0ac15393b34067e"
    assert image.namespace == {k: v for k, v in ns.items() if k not in ("prefix", "input_kind",
                                                                       "v")}


class Toy(Embedder):
    params = {"scale": 2}


def test_the_core_writes_the_identity():
    model = Model("toy:o/n@v1", "toy", "o/n", "v1")
    toy = Toy()
    assert namespace_for(model, toy) == {"scale": 2, "backend": "toy", "repo_id": "o/n",
                                         "revision": "v1", "prefix": "", "input_kind": "text",
                                         "v": 1}
    toy.revision = "c0ffee"  # the resolved commit wins over the requested revision
    assert namespace_for(model, toy, prefix="p")["revision"] == "c0ffee"
    toy.params = {"repo_id": "mine", "scale": 3}  # a backend cannot override the identity
    assert namespace_for(model, toy)["repo_id"] == "o/n"
    toy.namespace_identity = False
    assert set(namespace_for(model, toy)) == {"repo_id", "scale", "prefix", "input_kind", "v"}

    class Legacy:  # a plugin older than the base class: its namespace, identity added
        namespace = {"backend": "toy", "knob": 1}

    assert namespace_for(model, Legacy()) == {"backend": "toy", "knob": 1, "repo_id": "o/n",
                                              "revision": "v1", "prefix": "", "input_kind":
                                              "text", "v": 1}


def test_embedder_defaults_cover_what_the_core_reads():
    toy = Toy()
    assert (toy.dim, toy.expected_dim, toy.batch_size, toy.concurrency) == (0, None, None, 1)
    assert (toy.max_batch_tokens, toy.count_tokens, toy.tokens_exact) == (None, None, False)
    assert (toy.max_input_tokens, list(toy.model_files), toy.ref) == (None, [], "")
    toy.cancel()
    toy.finish()
    with pytest.raises(NotImplementedError):
        toy.embed(["x"])
    toy.model = Model("toy-model", "toy", "o/n")
    assert toy.ref == "toy-model"
    toy.namespace = {"knob": 1}  # what older plugins did: it sets params
    assert toy.params == {"knob": 1}
    assert toy.namespace == {"knob": 1, "backend": "toy", "repo_id": "o/n"}


BACKEND = Backend("toy", options=(
    Option("normalize", bool, False, "L2-normalize"),
    Option("dims", int, None, "dimensions", minimum=1),
    Option("scale", float, 1.0),
    Option("mode", str, "fast", choices=("fast", "slow")),
))


def test_options_parse_typed_values():
    assert parse_options(BACKEND, ["normalize=yes", "dims=256", "scale=0.5", "mode=slow"]) == \
        {"normalize": True, "dims": 256, "scale": 0.5, "mode": "slow"}
    assert parse_options(BACKEND, ["dims=1", "dims=2"]) == {"dims": 2}  # the last one wins
    assert check_options(BACKEND, {"dims": 8, "normalize": False, "scale": 2, "mode": None}) == \
        {"dims": 8, "normalize": False, "scale": 2.0}
    assert check_options(BACKEND, {"dims": "8"}) == {"dims": 8}  # text: parsed as on the CLI
    assert with_defaults(BACKEND, {"dims": 8}) == {"normalize": False, "dims": 8, "scale": 1.0,
                                                  "mode": "fast"}


@pytest.mark.parametrize(("given", "message"), [
    (["size=3"], "unknown option 'size'; toy options: normalize (bool), dims (int), "
                 "scale (float), mode (fast|slow)"),
    (["dims"], "option 'dims': expected KEY=VALUE"),
    (["dims=x"], "toy option dims: expected int, got 'x'"),
    (["dims=0"], "toy option dims: must be at least 1, got 0"),
    (["normalize=maybe"], "toy option normalize: expected true or false, got 'maybe'"),
    (["mode=medium"], "toy option mode: expected one of fast, slow, got 'medium'"),
])
def test_options_refuse_bad_input_in_one_line(given, message):
    with pytest.raises(UsageError) as err:
        parse_options(BACKEND, given)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_options_refuse_bad_python_values():
    for values in ({"dims": 1.5}, {"normalize": 1}, {"scale": True}, {"nope": 1}):
        with pytest.raises(UsageError):
            check_options(BACKEND, values)
    with pytest.raises(UsageError, match="takes no options"):
        parse_options(Backend("bare"), ["x=1"])


def test_builtin_backends_declare_their_load_options():
    from embctl.registry import backends

    declared = {name: [o.name for o in b.options] for name, b in backends().items()}
    assert declared == {
        "st": ["device", "normalize", "truncate_dim"],
        "image": ["device", "normalize", "image_range", "path_field", "workers"],
        "matrix": ["normalize", "tensor"],
        "onnx": ["device", "variant", "normalize", "truncate_dim", "threads"],
        "openai": ["dimensions", "base_url", "batch_size", "max_batch_tokens", "concurrency",
                   "max_retries", "backoff", "timeout"],
    }
    openai = backends()["openai"]
    with pytest.raises(UsageError) as err:  # a parser's message; the credentials never shown
        parse_options(openai, ["base_url=https://user:sk-secret@h/v1"])
    assert "sk-secret" not in str(err.value) and "credentials" in str(err.value)
    assert parse_options(backends()["image"], ["image-range=0:16383"]) == \
        {"image_range": "0:16383"}
    text = format_backend_options()
    assert "openai:\n  dimensions=INT" in text and "image_range=minmax|LO:HI" in text


def test_plugins_lists_backend_options(embctl):
    proc = embctl("plugins")
    assert proc.returncode == 0, proc.stderr
    assert "truncate_dim=INT" in proc.stdout and "base_url=URL" in proc.stdout
    rows = json.loads(embctl("plugins", "--json").stdout)
    [st] = [b for p in rows for b in p["backends"] if b["name"] == "st"]
    assert st["options"][1] == {"name": "normalize", "type": "bool", "default": False,
                                "help": "L2-normalize the vectors", "choices": None}


NOTES = """
    import os
    from pathlib import Path

    from embctl.hookspecs import hookimpl
    from embctl.inventory import Entry

    class NoteStore:
        kind = "note"
        du_lines = (("notes", "notes"),)
        du_optional = frozenset()

        @classmethod
        def open(cls, cache_dir):
            return cls()

        @property
        def root(self):
            return Path(os.environ["EMBCTL_HOME"]) / "notes"

        def scan(self):
            return [Entry("note", p.stem, None, None, None, None, p.stat().st_size, str(p))
                    for p in sorted(self.root.glob("*.txt"))]

        def usage(self):
            return {"notes": sum(e.size_bytes for e in self.scan())}

    class Broken(NoteStore):
        kind = "broken"
        du_lines = (("broken", "broken things"),)

        def scan(self):
            raise RuntimeError("boom in scan")

    @hookimpl
    def register_stores(register):
        register(NoteStore)
        register(Broken)
        register(object)  # no kind: refused with a warning
"""


def test_a_plugin_registers_a_store_that_ls_and_du_visit(embctl, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "embctl_notes", NOTES)
    env = with_site(embctl, site)
    notes = embctl.home / "embctl" / "notes"
    notes.mkdir(parents=True)
    (notes / "hello.txt").write_text("x" * 1234)
    proc = embctl("ls", "--json", "--filter", "kind=note", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [(r["kind"], r["ref"], r["size_bytes"]) for r in json.loads(proc.stdout)] == [
        ("note", "hello", 1234)]
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len([w for w in warnings if "boom in scan" in w]) == 1, proc.stderr
    assert len([w for w in warnings if "needs a kind" in w]) == 1, proc.stderr
    proc = embctl("du", "--json", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    usage = json.loads(proc.stdout)
    keys = list(usage)  # every store's main line (plugins in entry-point order), then the rest
    assert keys[:2] == ["models", "vectors"] and keys[-3:] == ["incomplete", "other", "total"]
    assert sorted(keys[2:-3]) == ["broken", "matrices", "notes", "onnx_exports"]
    assert usage["notes"] == 1234 and usage["broken"] == 0
    assert usage["total"] == sum(v for k, v in usage.items() if k != "total")
    human = embctl("du", env=env).stdout
    assert "notes" in human and "broken things" in human
    proc = embctl("ls", "--filter", "kind=nope", env=env)
    assert proc.returncode == 2 and "note" in proc.stderr
