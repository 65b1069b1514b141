"""ONNX exports of repos that ship no ONNX weights (the API is ``embctl_onnx.exported``).

    layout    where exports live, their manifest (standard library only)
    convert   torch export and onnxruntime int8 quantization (the heavy part)
    scan      exports as inventory rows, matching references
    repair    verify's checks and repairs, what rm --prune removes
    store     the Store that ls, du, rm and verify visit
    hooks     its register_stores hookimpl
"""
