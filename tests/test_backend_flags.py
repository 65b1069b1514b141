"""Flags that backends declare (``Option(flag=...)``, issue #26): ``embed`` takes them without
naming them, ``embed --help`` lists them per backend, and the same flag and ``-O`` give the same
run."""

from __future__ import annotations

import json

import click
import pytest
from support.image_fixtures import TINY_DIM, TINY_RESNET, build_resnet_repo, make_images
from support.runner import one_line_error

from embctl.backends import Option
from embctl.cli.backend_flags import click_options

REF = f"image:{TINY_RESNET}"


def test_embed_help_lists_declared_flags_by_backend(embctl):
    out = embctl("embed", "--help", check=True).stdout
    core, _, rest = out.partition("Backend flags (")
    for flag in ("--variant", "--dimensions", "--base-url", "--image-range", "--path-field"):
        assert flag not in core.partition("Options:")[2], flag  # not among the core's own
    sections = {}
    for chunk in ("Backend flags (" + rest).split("Backend flags (")[1:]:
        name, _, body = chunk.partition(")")
        sections[name] = body.partition("Backend options (")[0]
    assert "--variant fp32|int8" in sections["onnx"]
    assert "--dimensions" in sections["openai"] and "--base-url URL" in sections["openai"]
    assert "--image-range minmax|LO:HI" in sections["image"]
    assert "--path-field" in sections["image"]


def test_two_backends_declaring_a_flag_share_one_option():
    a = Option("dimensions", int, None, "first help", minimum=1, flag="--dimensions")
    b = Option("dimensions", int, None, "second help", flag="--dimensions")
    c = Option("fast", bool, False, "go fast", flag="--fast")
    (dims, fast) = click_options([(None, [a, c]), (None, [b])])
    assert dims.opts == ["--dimensions"] and dims.help == "first help"
    assert fast.secondary_opts == ["--no-fast"]
    with pytest.raises(click.BadParameter):
        dims.type.convert("0", dims, None)  # the first declaration's minimum
    with pytest.raises(ValueError, match="--dims"):
        Option("dimensions", int, flag="--dims")  # a flag is the option's own name


def test_path_field_is_the_image_backends_option(embctl, hub_root, tmp_path):
    build_resnet_repo(hub_root)
    images = make_images(tmp_path)
    rows = json.dumps({"file": str(images["rgb.png"])}) + "\n"
    flag = embctl("embed", REF, "--path-field", "file", "-q", input=rows)
    assert flag.returncode == 0, flag.stderr
    option = embctl("embed", REF, "-O", "path_field=file", input=rows)
    assert option.returncode == 0, option.stderr
    assert "1 cache hit" in option.stderr  # the same inputs, the same namespace
    assert json.loads(option.stdout)["embedding"] == json.loads(flag.stdout)["embedding"]
    assert len(json.loads(flag.stdout)["embedding"]) == TINY_DIM


def test_a_flag_of_another_backend_is_refused_in_one_line(pulled):
    proc = pulled("embed", "all-MiniLM-L6-v2", "--lines", "--path-field", "file", input="a\n")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--path-field does not apply to the st backend" in one_line_error(proc)


def test_pull_and_export_take_the_flags_of_pull_options_only(embctl):
    for command in ("pull", "export"):
        out = embctl(command, "--help", check=True).stdout
        assert "Backend flags (onnx)" in out and "--variant fp32|int8" in out, command
        assert "--dimensions" not in out and "--image-range" not in out, command
