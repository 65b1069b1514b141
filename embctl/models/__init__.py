"""The model cache: pull, scan, usage, removal, verification, import and export."""
