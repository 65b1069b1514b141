"""The matrix side of CLI commands owned elsewhere (``embctl export matrix:... -o FILE``)."""

from __future__ import annotations

from pathlib import Path

from embctl.plugin import UsageError


def export_command(ref: str, output: Path | None, to_dir: Path | None, fmt: str | None, *,
                   as_json: bool, quiet: bool) -> None:
    """``embctl export matrix:A[+B][@REV] -o FILE.npy|FILE.safetensors``."""
    from embctl.plugin import human_size, info, print_json
    from embctl_matrix.matrices.arrays import export_matrix

    if to_dir is not None or output is None:
        raise UsageError(f"{ref}: a matrix is exported with -o FILE.npy or -o FILE.safetensors")
    if fmt is not None and fmt not in ("npy", "safetensors"):
        raise UsageError(f"{ref}: a matrix is exported as npy or safetensors, not {fmt}")
    if fmt is not None and output.suffix.lower() != f".{fmt}":
        raise UsageError(f"{output}: --format {fmt} needs a .{fmt} file name")
    from embctl.plugin import refuse_cache_path

    refuse_cache_path(output, "-o")  # never over the cached matrix, or anything in a cache
    summary = export_matrix(ref, output)
    if as_json:
        print_json(summary)
    elif not quiet:
        info(f"exported {summary['ref']} ({summary['dtype']} {summary['shape']}) to "
             f"{summary['path']}: {human_size(summary['size_bytes'])}")
