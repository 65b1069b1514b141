"""ONNX Runtime backend (``onnx:``): torch-free embeddings with onnxruntime + tokenizers.

Placeholder: registers nothing yet.
"""
