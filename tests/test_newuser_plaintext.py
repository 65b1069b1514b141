"""Issue #25, item 2: plain text in the first minute, with the real all-MiniLM-L6-v2.

Plain text piped without ``--lines`` is told about ``--lines`` (the first line only; later bad
lines keep their message); ``--content TEXT`` embeds texts given on the command line, through
the cache like any input; counts agree with their nouns ("1 line", "2 lines")."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.runner import one_line_error

MODEL = "all-MiniLM-L6-v2"
HINT = "for plain text, one text per line, use --lines"


def rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# -- a first line that is not JSON ---------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("hello\n", "line 1: not JSON; " + HINT),
    ("hello\nworld\n", "line 1: not JSON; " + HINT),
    ("\n  \nhello\n", "line 3: not JSON; " + HINT),  # the first line with something on it
    ("42\n", "line 1: expected a JSON object, got int; " + HINT),
    ('"hello"\n', "line 1: expected a JSON object, got str; " + HINT),
])
def test_plain_text_without_lines_says_use_lines(pulled, text, expected):
    proc = pulled("embed", MODEL, input=text)
    assert proc.returncode == 1 and proc.stdout == ""
    assert one_line_error(proc) == f"embctl: error: {expected}"
    assert "--on-error skip" not in proc.stderr  # skipping every line of a text is no advice


def test_the_dry_run_says_it_too(pulled):
    proc = pulled("embed", MODEL, "--dry-run", input="hello\n")
    assert proc.returncode == 1
    assert one_line_error(proc) == f"embctl: error: line 1: not JSON; {HINT}"


def test_a_later_bad_line_keeps_its_message(pulled):
    proc = pulled("embed", MODEL, input='{"text": "fine"}\nhello\n')
    assert proc.returncode == 1
    error = one_line_error(proc)
    assert error.startswith("embctl: error: line 2: invalid JSON: "), error
    assert error.endswith("(use --on-error skip to skip bad lines)") and "--lines" not in error
    # A first line that is JSON, but not an object of the kind a text file would give: no hint.
    listed = pulled("embed", MODEL, input="[1, 2]\n")
    assert one_line_error(listed) == ("embctl: error: line 1: expected a JSON object, got "
                                      "list (use --on-error skip to skip bad lines)")


def test_on_error_skip_warns_with_the_hint_and_goes_on(pulled):
    proc = pulled("embed", MODEL, "--on-error", "skip",
                  input='hello\n{"text": "refund policy"}\nworld\n')
    assert proc.returncode == 0, proc.stderr
    assert [r["text"] for r in rows(proc.stdout)] == ["refund policy"]
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings[0] == f"embctl: warning: line 1: not JSON; {HINT}; skipped"
    assert warnings[1].startswith("embctl: warning: line 3: invalid JSON: ")
    assert warnings[1].endswith("; skipped") and "--lines" not in warnings[1]
    assert "3 lines read, 1 embedded" in proc.stderr and "2 skipped" in proc.stderr


def test_the_same_text_with_lines_embeds(pulled):
    proc = pulled("embed", MODEL, "--lines", input="hello\n")
    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout)[0]["text"] == "hello"


# -- --content ---------------------------------------------------------------------------

def test_content_embeds_each_text_in_order_through_the_cache(pulled):
    texts = ["The refund policy allows returns within 30 days", "weather forecast",
             "Ünïcödé 🙂"]
    proc = pulled("embed", MODEL, "-c", texts[0], "--content", texts[1], "-c", texts[2])
    assert proc.returncode == 0, proc.stderr
    out = rows(proc.stdout)
    assert [list(r) for r in out] == [["text", "embedding"]] * 3
    assert [r["text"] for r in out] == texts
    assert "3 lines read, 3 embedded (0 cache hits, 3 computed)" in proc.stderr
    # The vectors are the texts' own: the same as the texts read as plain lines, which are
    # now cache hits (the key is the text, not the JSON line -c made of it).
    lines = pulled("embed", MODEL, "--lines", input="".join(t + "\n" for t in texts))
    assert lines.returncode == 0 and "3 cache hits, 0 computed" in lines.stderr
    for a, b in zip(out, rows(lines.stdout), strict=True):
        assert a["embedding"] == b["embedding"]
    again = pulled("embed", MODEL, "-c", texts[1])
    assert again.returncode == 0 and "1 line read" in again.stderr
    assert "(1 cache hit, 0 computed)" in again.stderr
    assert rows(again.stdout) == [out[1]]


def test_content_keeps_a_newline_inside_a_text_and_uses_the_text_field(pulled):
    proc = pulled("embed", MODEL, "-c", "two\nlines", "--text-field", "q")
    assert proc.returncode == 0, proc.stderr
    (row,) = rows(proc.stdout)
    assert row["q"] == "two\nlines" and len(row["embedding"]) == 384


def test_content_writes_npy_with_ids(pulled, tmp_path):
    out = tmp_path / "c.npy"
    proc = pulled("embed", MODEL, "-c", "first text", "-c", "second text", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    matrix = np.load(out)
    assert matrix.shape == (2, 384) and matrix.dtype == np.float32
    assert (tmp_path / "c.ids.jsonl").read_text() == "1\n2\n"
    jsonl = rows(pulled("embed", MODEL, "-c", "second text").stdout)
    assert np.array_equal(matrix[1], np.asarray(jsonl[0]["embedding"], dtype=np.float32))


@pytest.mark.parametrize("args", [("-i", "docs.jsonl"), ("--input", "-")])
def test_content_with_an_input_is_refused(pulled, tmp_path, args):
    (tmp_path / "docs.jsonl").write_text('{"text": "x"}\n')
    proc = pulled("embed", MODEL, "-c", "text", *(a.replace("docs.jsonl", str(tmp_path /
                                                  "docs.jsonl")) for a in args))
    if args[1] == "-":  # `-i -` is the default spelled out: stdin is not read, -c is
        assert proc.returncode == 0 and rows(proc.stdout)[0]["text"] == "text"
        return
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--content and -i are two inputs" in one_line_error(proc)


def test_content_is_refused_by_ray_before_it_starts(pulled):
    proc = pulled("embed", MODEL, "--engine", "ray", "-c", "text", "-o", "out")
    assert proc.returncode == 2
    assert "--engine ray does not take --content" in one_line_error(proc)


def test_content_with_an_empty_text_is_a_bad_input(pulled):
    proc = pulled("embed", MODEL, "-c", "fine", "-c", "")
    assert proc.returncode == 1
    assert "line 2: empty 'text'" in one_line_error(proc)


def test_help_shows_content_and_an_example(pulled):
    proc = pulled("embed", "--help")
    assert "-c, --content TEXT" in proc.stdout
    assert "embctl embed all-MiniLM-L6-v2 -c 'first text' -c 'second text'" in proc.stdout


# -- counts and their nouns ------------------------------------------------------------------

def test_plural():
    from embctl.console import plural

    assert [plural(n, "line") for n in (0, 1, 2, 1024)] == [
        "0 lines", "1 line", "2 lines", "1,024 lines"]
    assert plural(1, "matrix", "matrices") == "1 matrix"
    assert plural(3, "matrix", "matrices") == "3 matrices"


def test_one_line_is_one_line_in_the_summaries(pulled):
    proc = pulled("embed", MODEL, "--lines", input="hello\n")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("embctl: 1 line read, 1 embedded (0 cache hits, 1 computed), "
                              "0 skipped in "), summary
    again = pulled("embed", MODEL, "--lines", input="hello\nfresh\nfresh\n")
    assert "3 lines read, 3 embedded (1 cache hit, 1 computed, 1 duplicate)" in again.stderr
    dry = pulled("embed", MODEL, "--lines", "--dry-run", input="new text\n")
    assert dry.returncode == 0, dry.stderr
    assert ("embctl: dry run: 1 line read, 1 input: 0 cached, 1 would be sent in 1 request, "
            "~4 tokens; nothing sent") in dry.stderr  # [CLS] new text [SEP]


def test_one_more_bad_line_skipped(pulled):
    bad = "".join(f"not json {i}\n" for i in range(21))  # 20 warned one by one, then 1 more
    proc = pulled("embed", MODEL, "--on-error", "skip", input='{"text": "ok"}\n' + bad)
    assert proc.returncode == 0, proc.stderr
    assert "embctl: warning: 1 more bad line skipped" in proc.stderr
    assert "1 more bad lines" not in proc.stderr


def test_verify_repairs_one_file_in_the_singular(pulled):
    from support.homes import damage

    snapshot = next(pulled.repo_dir.glob("snapshots/*"))
    damage(snapshot / "config.json")
    proc = pulled("verify", "--repair")
    assert proc.returncode == 0, proc.stderr
    assert "repairing 1 file of sentence-transformers/all-MiniLM-L6-v2" in proc.stderr
    assert "1 problem, repaired" in proc.stderr
