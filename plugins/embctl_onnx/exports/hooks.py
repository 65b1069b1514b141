"""The ``register_stores`` hookimpl of the ONNX exports (re-exported by ``embctl_onnx``)."""

from __future__ import annotations

from embctl.plugin import hookimpl


@hookimpl
def register_stores(register):
    from embctl_onnx.exports.store import OnnxExportStore  # cheap: ls and du import it

    register(OnnxExportStore)
