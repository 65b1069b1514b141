"""Issue #25, item 1: a long embed shows real progress.

On a terminal a rich bar of the input file's bytes (percentage, lines, cache hits, rate, ETA),
or a spinner when the input is a pipe; off a terminal a plain line on stderr now and then
(every 10% of a file's bytes, at most one per EMBCTL_PROGRESS_INTERVAL seconds; without a
size, one per interval); ``-q`` nothing.  Both displays refresh while a batch is still in the
model, not once a window.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from support.inprocess import environment
from support.openai_server import Fault
from support.runner import embctl_argv

# embctl.embed.progress is imported by the tests that use it: the command's tests then run on
# a tree without it too (and fail there on what it shows, not on an import).

MODEL = "all-MiniLM-L6-v2"
#: A plain progress line: "embedding: 40% (2,000 lines, 35 lines/s, 0 cache hits, ...)".
PLAIN = re.compile(r"embedding: (\d+)% \(([\d,]+) lines?, [\d.,]+ lines/s, ([\d,]+) cache hits?"
                   r"(, about (\d+h )?(\d+m )?\d+s left)?\)$")
SPINNER_PLAIN = re.compile(r"embedding: ([\d,]+) lines?, [\d.,]+ lines/s, ([\d,]+) cache hits?$")
SUMMARY = re.compile(r"embctl: [\d,]+ lines? read, ")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sentences(n: int) -> list[str]:
    topics = ["rivers", "bridges", "prime numbers", "gardens", "old libraries", "storms"]
    return [f"Sentence {i} is about {topics[i % len(topics)]} and " + "more words " * (i % 5)
            for i in range(n)]


# -- the model: bytes, windows, batches --------------------------------------------------------


def test_the_fraction_follows_the_bytes_of_the_lines_done(tmp_path):
    """A real file read as the run reads it: the bytes done are the file's position at the
    end of each written window, plus the done share of the window in the model."""
    from embctl.embed.progress import EmbedProgress, input_size

    path = tmp_path / "in.txt"
    lines = [f"line number {i}\n".encode() for i in range(300)]
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    clock = Clock()
    with open(path, "rb") as stream:
        total, tell = input_size(stream)
        assert total == size
        progress = EmbedProgress(total, tell, clock=clock)
        first = [stream.readline() for _ in range(100)]
        end = sum(map(len, first))
        assert stream.tell() == end
        progress.window_started(100, hits=20)  # 20 found in the cache, 80 to compute
        snap = progress.snapshot()
        assert (snap.lines, snap.hits, snap.done) == (20, 20, end * 20 // 100)
        progress.computed(40)  # a batch: the lines done move inside the window
        clock.now += 4
        snap = progress.snapshot()
        assert (snap.lines, snap.done) == (60, end * 60 // 100)
        assert snap.rate == 15.0 and snap.left == pytest.approx(4 * (size - snap.done) / snap.done)
        progress.computed(40)
        progress.window_done()
        assert progress.snapshot().done == end
        # Two windows in flight (API backends read ahead): batches count for the older one.
        for _ in range(100):
            stream.readline()
        second = stream.tell()
        progress.window_started(100, hits=0)
        stream.read()
        progress.window_started(100, hits=100)
        progress.computed(50)
        snap = progress.snapshot()
        assert (snap.lines, snap.hits) == (150, 20)
        assert snap.done == end + (second - end) * 50 // 100
        progress.window_done()
        progress.window_done()
        snap = progress.snapshot()
        assert (snap.lines, snap.hits, snap.done, snap.fraction) == (300, 120, size, 1.0)


def test_only_a_regular_file_has_a_size(tmp_path):
    from embctl.embed.progress import input_size

    path = tmp_path / "in.txt"
    path.write_bytes(b"first line\nsecond line\n")
    with open(path, "rb") as stream:
        stream.readline()  # stdin redirected from a file another command began to read
        assert input_size(stream)[0] == len(b"second line\n")
    read, write = os.pipe()
    with os.fdopen(read, "rb") as pipe, os.fdopen(write, "wb"):
        assert input_size(pipe) is None
    assert input_size(io.BytesIO(b"x\n")) is None  # no descriptor (in-process stdin)
    assert input_size(iter([b"x\n"])) is None  # a listing (image folders)
    (tmp_path / "empty.txt").write_bytes(b"")
    with open(tmp_path / "empty.txt", "rb") as stream:
        assert input_size(stream) is None


def test_plain_lines_at_each_tenth_at_most_one_per_interval():
    """The cadence on a fake clock: with a size, a new 10% step and the interval passed (or
    a minute without a line); without one, every interval; never at 100%."""
    from embctl.embed.progress import Cadence

    known = Cadence(10)
    assert [known.due(0.15, 5), known.due(0.15, 10), known.due(0.25, 12), known.due(0.25, 20),
            known.due(0.27, 35), known.due(0.29, 80), known.due(0.95, 95), known.due(1.0, 200)
            ] == [False, True, False, True, False, True, True, False]
    unknown = Cadence(10)
    assert [unknown.due(None, t) for t in (9.9, 10, 15, 20, 31)] == [False, True, False, True,
                                                                     True]


def test_plain_lines_of_a_run_on_a_fake_clock(tmp_path):
    """EmbedProgress and PlainLines together, the clock a parameter: what stderr gets."""
    from embctl.embed.progress import EmbedProgress, PlainLines, plain_line

    clock = Clock()
    out = io.StringIO()
    progress = EmbedProgress(1000, iter([0, 1000]).__next__, clock=clock)
    progress.display = PlainLines(progress, out, interval=10, ticker=False)  # no thread: no race
    progress.window_started(1000, hits=0)
    for _ in range(10):
        clock.now += 4
        progress.computed(100)
    progress.window_done()
    progress.close()
    got = out.getvalue().splitlines()
    assert got == ["embedding: 30% (300 lines, 25 lines/s, 0 cache hits, about 28s left)",
                   "embedding: 60% (600 lines, 25 lines/s, 0 cache hits, about 16s left)",
                   "embedding: 90% (900 lines, 25 lines/s, 0 cache hits, about 4s left)"]
    assert plain_line(progress.snapshot()).startswith("embedding: 100% (1,000 lines, 25 lines/s")
    without = EmbedProgress(clock=clock)
    without.window_started(1, hits=1)
    assert plain_line(without.snapshot()) == "embedding: 1 line, 0 lines/s, 1 cache hit"


# -- the command, off a terminal ---------------------------------------------------------------


def test_off_a_terminal_plain_lines_on_stderr_and_only_vectors_on_stdout(pulled, tmp_path):
    texts = sentences(24)
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(texts) + "\n")
    args = ("embed", MODEL, "--lines", "-i", str(source), "--batch-size", "4")
    proc = pulled(*args, env={"EMBCTL_PROGRESS_INTERVAL": "0"})  # a line at every 10% step
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == texts and all(len(r["embedding"]) == 384 for r in rows)
    *shown, summary = proc.stderr.splitlines()
    assert SUMMARY.match(summary), proc.stderr
    matches = [PLAIN.match(line) for line in shown]
    assert all(matches), shown
    percents = [int(m.group(1)) for m in matches]
    done = [int(m.group(2)) for m in matches]
    assert len(percents) >= 4 and percents == sorted(set(percents)) and percents[-1] < 100
    assert done == sorted(done) and 0 < done[-1] < 24  # batch by batch, inside one window

    quiet = pulled(*args, "-q", env={"EMBCTL_PROGRESS_INTERVAL": "0"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout == proc.stdout
    default = pulled(*args)  # all cached: far under the 10 s interval, so no progress line
    assert default.returncode == 0 and len(default.stderr.splitlines()) == 1, default.stderr
    assert SUMMARY.match(default.stderr)


def test_plain_lines_keep_coming_while_a_slow_call_is_in_flight(oa, fake):
    """stdin (no size): a line per interval, from the progress thread, while the only
    request of the run waits 2 s for its answer."""
    fake.add_faults(Fault(delay_s=2.0))
    proc = oa("embed", "openai:test-embed", "--lines", input="alpha\nbeta\ngamma\n",
              env={"EMBCTL_PROGRESS_INTERVAL": "0.1", "EMBCTL_OPENAI_TIMEOUT": "30"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3 and len(fake.log) == 1
    *shown, summary = proc.stderr.splitlines()
    assert SUMMARY.match(summary)
    counts = [SPINNER_PLAIN.match(line) for line in shown]
    assert all(counts), shown
    waiting = [m for m in counts if m.group(1) == "0"]
    assert len(waiting) >= 3, shown  # ~20 expected: 2 s at one line per 0.1 s


def test_the_bar_is_redrawn_while_a_slow_call_is_in_flight(oa, fake):
    """The rich display (on a console that says it is a terminal) over a real run of the
    openai backend: rich's refresh thread draws frames while no batch has come back."""
    from rich.console import Console

    from embctl.embed.outputs import Writer
    from embctl.embed.progress import EmbedProgress
    from embctl.embed.progress_bar import RichBar
    from embctl.embed.records import Options
    from embctl.embed.run import run
    from embctl.embed.session import open_session, select
    from embctl.options import load_options

    class Rows(Writer):
        rows = 0

        def write(self, records, matrix) -> None:
            Rows.rows += len(matrix)

        def close(self, ok: bool) -> None:
            pass

    fake.add_faults(Fault(delay_s=2.0))
    screen = io.StringIO()
    with environment({**oa.env, "EMBCTL_OPENAI_TIMEOUT": "30"}):
        target = select("openai:test-embed")
        values = load_options(target.backend, (), flags={}, shared={})
        session = open_session(target, {**values, "quiet": True, "cache_dir": None},
                               cache="off")
        progress = EmbedProgress()
        progress.display = RichBar(None, console=Console(file=screen, force_terminal=True,
                                                         width=120, color_system=None))
        stats = run(session.vectorizer, io.BytesIO(b"alpha\nbeta\ngamma\n"), lambda _: Rows(),
                    Options(lines=True), progress=progress)
        session.close()
    assert stats.embedded == Rows.rows == 3
    frames = [f for f in re.split(r"[\r\n]", ANSI.sub("\n", screen.getvalue()))
              if "embedding" in f]
    waiting = [f for f in frames if "· 0 lines · 0 cache hits" in f]
    assert len(waiting) >= 3, frames  # ~8 expected: 2 s at four frames a second
    assert any("· 3 lines · 0 cache hits" in f for f in frames), frames  # the last frame


# -- on a real terminal ------------------------------------------------------------------------


def _on_a_pty(env: dict, args: tuple[str, ...], stdin, out: Path | None,
              feed: bytes | None = None) -> str:
    """Run ``embctl ARGS`` with stderr on a pty (and stdout in ``out``, else on the pty too);
    -> what the terminal got."""
    import pty

    master, slave = pty.openpty()
    with open(out or os.devnull, "wb") as stdout:
        proc = subprocess.Popen(embctl_argv(*args), env={**env, "COLUMNS": "120"},
                                stdin=stdin, stdout=stdout if out else slave, stderr=slave)
    os.close(slave)
    if feed is not None:
        proc.stdin.write(feed)
        proc.stdin.close()
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0, b"".join(chunks)
    os.close(master)
    return ANSI.sub("\n", b"".join(chunks).decode(errors="replace"))


@pytest.mark.e2e  # stderr is a real terminal (a pty): rich draws its bar there and only there
def test_a_terminal_shows_a_bar_for_a_file_and_a_spinner_for_a_pipe(pulled, tmp_path):
    texts = sentences(24)
    source = tmp_path / "docs.txt"
    source.write_bytes(("\n".join(texts) + "\n").encode())
    args = ("embed", MODEL, "--lines", "--batch-size", "4")
    with open(source, "rb") as stdin:  # stdin redirected from a file: its size is known
        tty = _on_a_pty(pulled.env, args, stdin, tmp_path / "a.jsonl")
    frames = [f for f in re.split(r"[\r\n]", tty) if f.startswith("embedding")]
    mid = [f for f in frames if re.search(r"━.* ([1-9]\d?)% .*· ETA \d+:\d\d", f)]
    assert mid, tty  # a bar at a percentage under 100, with its ETA
    assert re.search(r"\d+(\.\d)?/\d+(\.\d)? kB · \d+ lines · 0 cache hits · [\d.,]+ lines/s",
                     mid[-1]), mid
    assert len((tmp_path / "a.jsonl").read_text().splitlines()) == 24  # stdout: the vectors
    assert SUMMARY.search(tty)

    piped = _on_a_pty(pulled.env, args, subprocess.PIPE, tmp_path / "b.jsonl",
                      feed=source.read_bytes())  # a pipe: no size, a spinner
    spins = [f for f in re.split(r"[\r\n]", piped) if "embedding ·" in f]
    assert spins and not any("%" in f or "━" in f for f in spins), piped
    assert any(re.search(r"24 lines · 24 cache hits · [\d.,]+ lines/s · \d+:\d\d:\d\d", f)
               for f in spins), spins  # all cached by the first run
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()

    # The vectors on the same terminal: they scroll there, no bar is drawn across them.
    both = _on_a_pty(pulled.env, args, subprocess.PIPE, None, feed=source.read_bytes())
    assert "embedding ·" not in both and "━" not in both, both
    assert both.count('"embedding": [') == 24 and SUMMARY.search(both)
