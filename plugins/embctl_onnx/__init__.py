"""ONNX Runtime backend (``onnx:``): torch-free embeddings with onnxruntime + tokenizers.

Placeholder: registers nothing yet.
"""

# The store of ONNX exports (repos without ONNX weights): ls, du, rm and verify see them.
from embctl_onnx.exports.hooks import register_stores  # noqa: E402, F401
