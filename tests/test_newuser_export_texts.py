"""`export --vectors --texts FILE`: a JSONL file's records back with their cached vectors,
computing nothing (issue #25, item 7).  Real embeds with the real all-MiniLM-L6-v2 fill the
cache; the export must give back byte for byte what `embed` wrote for the same records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from support.runner import one_line_error

MODEL = "all-MiniLM-L6-v2"
DOCS = [
    {"id": "a1", "text": "The refund policy allows returns within 30 days", "tags": ["policy"]},
    {"text": "weather forecast", "id": 2, "meta": {"lang": "en", "score": 0.5}},
    {"id": 3, "text": "Grüße aus Köln, 東京 too", "embedding": "an old one"},
    {"id": 4, "text": "weather forecast", "note": None},  # the same text again
]


def jsonl(rows: list[dict], blank_after: int | None = None) -> str:
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "\n")
    return "".join(lines)


def cached_rows(home: Path) -> int:
    total = 0
    for path in (home / "embctl" / "vectors").glob("*.sqlite"):
        conn = sqlite3.connect(path)
        try:
            total += conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            conn.close()
    return total


def test_texts_gives_back_each_record_with_the_vector_embed_wrote(pulled, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(jsonl(DOCS, blank_after=2), encoding="utf-8")
    embedded = pulled("embed", MODEL, "-i", str(docs))
    assert embedded.returncode == 0, embedded.stderr

    out = tmp_path / "docs.vec.jsonl"
    proc = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    # The same bytes as embed's output: every field, in order, each record's vector exactly.
    assert out.read_text(encoding="utf-8") == embedded.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a1", 2, 3, 4]
    assert rows[1]["meta"] == {"lang": "en", "score": 0.5} and rows[0]["tags"] == ["policy"]
    assert rows[1]["embedding"] == rows[3]["embedding"] and len(rows[0]["embedding"]) == 384
    assert "exported 4 records" in proc.stderr

    to_stdout = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o", "-", "-q")
    assert to_stdout.returncode == 0 and to_stdout.stdout == embedded.stdout
    assert to_stdout.stderr == ""


def test_texts_not_in_the_cache_are_left_out_reported_and_not_computed(pulled, tmp_path):
    first = tmp_path / "first.jsonl"
    first.write_text(jsonl(DOCS[:1] + DOCS[2:3]), encoding="utf-8")
    embedded = pulled("embed", MODEL, "-i", str(first))
    assert embedded.returncode == 0, embedded.stderr
    before = cached_rows(pulled.home)

    docs = tmp_path / "docs.jsonl"
    docs.write_text(jsonl(DOCS), encoding="utf-8")  # lines 2 and 4 were never embedded
    out, todo = tmp_path / "out.jsonl", tmp_path / "todo.jsonl"
    proc = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o", str(out),
                  "--missing", str(todo))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 of 4 texts not in the cache, left out: lines 2, 4" in proc.stderr
    assert f"embctl embed {MODEL} -i {todo}" in proc.stderr
    assert out.read_text(encoding="utf-8") == embedded.stdout  # the found ones, in order
    assert todo.read_text(encoding="utf-8") == jsonl([DOCS[1], DOCS[3]])  # lines verbatim
    assert cached_rows(pulled.home) == before  # nothing computed, nothing written

    as_json = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o",
                     str(tmp_path / "o2.jsonl"), "--json")
    assert as_json.returncode == 1
    summary = json.loads(as_json.stdout)
    assert (summary["records"], summary["vectors"], summary["missing_lines"]) == (4, 2, [2, 4])

    # The script's next step: embed what was missing, then the export is whole (exit 0).
    assert pulled("embed", MODEL, "-i", str(todo), "-q").returncode == 0
    again = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 4


def test_a_bad_line_in_texts_is_one_line_and_writes_nothing(pulled, tmp_path):
    assert pulled("embed", MODEL, input=jsonl(DOCS[:1])).returncode == 0
    docs = tmp_path / "docs.jsonl"
    docs.write_text(jsonl(DOCS[:1]) + "{not json\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = pulled("export", MODEL, "--vectors", "--texts", str(docs), "-o", str(out))
    assert proc.returncode == 2
    assert f"--texts {docs}: line 2: invalid JSON" in one_line_error(proc)
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []
    missing = pulled("export", MODEL, "--vectors", "--texts", str(tmp_path / "nope.jsonl"),
                     "-o", str(out))
    assert missing.returncode == 2 and "nope.jsonl: No such file" in one_line_error(missing)


def test_texts_reads_the_cache_prefix_and_text_field_pick(pulled, tmp_path):
    """Two caches of one model (with and without a prefix): the choice is explicit, as for
    `export --vectors`, and --prefix makes it; --text-field reads the texts as embed did."""
    rows = [{"n": i, "body": d["text"]} for i, d in enumerate(DOCS)]
    docs = tmp_path / "docs.jsonl"
    docs.write_text(jsonl(rows), encoding="utf-8")
    plain = pulled("embed", MODEL, "-i", str(docs), "--text-field", "body")
    query = pulled("embed", MODEL, "-i", str(docs), "--text-field", "body",
                   "--prefix", "query: ")
    assert plain.returncode == 0 and query.returncode == 0, plain.stderr + query.stderr
    assert plain.stdout != query.stdout  # the prefix changes the vectors

    export = ("export", MODEL, "--vectors", "--texts", str(docs), "--text-field", "body")
    both = pulled(*export, "-o", str(tmp_path / "x.jsonl"))
    assert both.returncode == 2 and "--namespace" in one_line_error(both)
    for prefix, expected in (("query: ", query.stdout), ("", plain.stdout)):
        out = tmp_path / f"out{len(prefix)}.jsonl"
        proc = pulled(*export, "--prefix", prefix, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.read_text(encoding="utf-8") == expected
    none = pulled(*export, "--prefix", "passage: ", "-o", str(tmp_path / "y.jsonl"))
    assert none.returncode == 1
    assert "no vector cache embedded with --prefix 'passage: '" in one_line_error(none)


def test_export_help_says_what_vectors_carry_and_offers_texts(embctl):
    proc = embctl("export", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--store-text" in text and "--texts FILE" in text
    assert "With --texts the exit code is 0 when every text was cached, 1 when some were not" \
        in text
    assert "--vectors --texts docs.jsonl -o docs.vec.jsonl" in text
