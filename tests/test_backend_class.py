"""``Backend`` is a base class: attributes declare a backend, methods with typed defaults do
what it supports, each called in one way (issue #26)."""

from __future__ import annotations

import pytest

from embctl.plugin import Backend, Option


class Remote(Backend):
    name = "remote"
    hub = False
    options = (Option("dim", int, 8),)

    def load(self, model, options):
        raise AssertionError("not called here")


def test_a_backend_without_code_takes_attributes_never_methods():
    assert Backend("bare", description="d").description == "d"
    with pytest.raises(TypeError, match="subclass Backend and override"):
        Backend(name="toy", load=lambda model, options: None)
    with pytest.raises(ValueError, match="pull_options must name declared options"):
        Backend("toy", pull_options=("variant",))


def test_overrides_tells_the_core_defaults_from_a_backends_own_methods():
    remote, bare = Remote(), Backend("bare")
    assert remote.overrides("load") and not bare.overrides("load")
    assert not remote.overrides("pull") and not remote.overrides("export")
    # The defaults: every file, recognise nothing, export nothing, texts in.
    assert bare.select_files(["a", "b"], {}) == ["a", "b"]
    assert bare.recognize(["modules.json"]) is False
    assert bare.export_files(None, ".", {}) == {}
    assert bare.input_adapter({"prefix": "q: "}).prefix == "q: "


def test_the_registered_backends_are_instances_of_subclasses():
    from embctl.registry import backends

    found = backends()
    assert {"st", "onnx", "image", "matrix", "openai"} <= set(found)
    for backend in found.values():
        assert isinstance(backend, Backend) and type(backend) is not Backend
        assert backend.overrides("load") and backend.plugin
    assert found["matrix"].overrides("pull") and found["openai"].overrides("pull")
    assert not found["st"].overrides("pull") and found["matrix"].overrides("export")


def test_a_backend_without_hub_models_has_nothing_to_pull(embctl):
    from embctl.plugin import EmbctlError, Model

    with pytest.raises(EmbctlError, match="the remote backend has nothing to pull"):
        Remote().pull(Model("remote:x", "remote", "x"), {"cache_dir": "."})
