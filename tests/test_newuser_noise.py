"""Issue #25, item 8: on a terminal, the user sees embctl's lines only.

The libraries' own output (transformers' load report for a checkpoint with a weight the model
does not use, its tokenizer's warnings, progress bars, Python warnings) goes to
``EMBCTL_HOME/logs/libraries.log``; ``-v`` shows it.  embctl's own warning that matters
(inputs truncated) stays.

The model: the real all-MiniLM-L6-v2 with one more tensor in its weights file, the masked-LM
head's bias a BERT pretraining checkpoint carries (``cls.predictions.bias``): transformers
loads it and prints its "UNEXPECTED ... can be ignored when loading from different
task/architecture" report, as for the many Hub models saved with their pretraining head.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import warnings
from pathlib import Path

import pytest
from support.hub import minilm_source
from support.inprocess import environment
from support.runner import embctl_argv

LONG = " ".join(["refund"] * 1500)  # 10 kB: past max_seq_length (256) and the tokenizer's 512
INPUT = '{"text": "hello"}\n' + f'{{"text": "{LONG}"}}\n'
TRUNCATED = "embctl: warning: 1 input longer than"
#: What the libraries print, which the user should not see unless -v.
NOISE = ("UNEXPECTED", "LOAD REPORT", "Loading weights", "Token indices sequence length",
         "it/s]")


def noisy_model(folder: Path) -> Path:
    """all-MiniLM-L6-v2's files (hard links) with a weights file of its own holding one
    unused tensor more: a new file, so the st backend loads it anew in this process."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    source = minilm_source()
    folder.mkdir(parents=True)
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif path.name != "model.safetensors":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    tensors = load_file(source / "model.safetensors")
    tensors["cls.predictions.bias"] = np.zeros(30522, dtype=np.float32)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def log_of(embctl) -> Path:
    return Path(embctl.env["EMBCTL_HOME"]) / "logs" / "libraries.log"


#: embctl's lines: its messages, and its progress (a spinner or nothing before "embedding").
EMBCTL_LINE = re.compile(r"^(embctl|\W{0,2}embedding\b)")


def only_embctl_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not embctl's."""
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr).replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not EMBCTL_LINE.match(line.strip())]


# -- in-process --------------------------------------------------------------------------

def test_the_load_report_goes_to_the_log_not_to_stderr(pulled, tmp_path):
    model = noisy_model(tmp_path / "model")
    proc = pulled("embed", str(model), input=INPUT)
    assert proc.returncode == 0, proc.stderr
    assert only_embctl_lines(proc.stderr) == [], proc.stderr
    assert TRUNCATED in proc.stderr  # the warning that matters: one embctl line
    assert "2 lines read, 2 embedded" in proc.stderr
    log = log_of(pulled).read_text()
    assert "UNEXPECTED" in log and "cls.predictions.bias" in log
    assert "transformers.modeling_utils WARNING: " in log
    assert "\x1b[" not in log  # the report's colours are for terminals


@pytest.mark.parametrize("where", ["embed", "group"])
def test_verbose_shows_the_libraries_output(pulled, tmp_path, where):
    model = noisy_model(tmp_path / "model")
    args = ("embed", str(model), "-v") if where == "embed" else ("-v", "embed", str(model))
    proc = pulled(*args, input=INPUT)
    assert proc.returncode == 0, proc.stderr
    shown = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr)  # the report's own bold
    assert "[transformers] BertModel LOAD REPORT from: " in shown
    assert "cls.predictions.bias | UNEXPECTED" in shown
    assert "Warning" not in shown  # nothing of embctl's own making (bars it turns on...)
    assert TRUNCATED in shown
    assert not log_of(pulled).exists()


def test_verbose_is_in_the_help(pulled):
    top = pulled("--help").stdout
    embed = pulled("embed", "--help").stdout
    assert "-v, --verbose" in top and "-v, --verbose" in embed
    assert "EMBCTL_HOME/logs/libraries.log" in embed


def test_a_library_warning_goes_to_the_log_or_with_v_to_stderr(pulled, capsys):
    from embctl import quiet

    logger = "embctl_test_library"
    with quiet.cli_owns_stderr(), environment(pulled.env):  # as during a command
        quiet.route_logs(logger)
        logging.getLogger(f"{logger}.module").warning("a library's warning: %s", "first")
        with quiet.library_warnings():
            warnings.warn("a deprecation a user cannot act on", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
    log = log_of(pulled).read_text()
    assert f"{logger}.module WARNING: a library's warning: first" in log
    assert "py.warnings UserWarning: " in log and "a deprecation a user cannot act on" in log
    with quiet.cli_owns_stderr(), environment({**pulled.env, quiet.VERBOSE_ENV: "1"}):
        logging.getLogger(logger).warning("shown")
        with quiet.library_warnings():
            warnings.warn("shown too", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert f"[{logger}] shown" in err and "UserWarning: shown too" in err


def test_a_log_that_cannot_be_written_is_dropped_silently(pulled, capsys):
    from embctl import quiet

    home = Path(pulled.env["EMBCTL_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").write_text("a file where the folder should be")
    with quiet.cli_owns_stderr(), environment(pulled.env):
        quiet.route_logs("embctl_test_library")
        logging.getLogger("embctl_test_library").warning("lost")
    assert capsys.readouterr().err == ""


def test_the_log_is_kept_small(pulled):
    from embctl import quiet

    log = log_of(pulled)
    log.parent.mkdir(parents=True)
    log.write_text("x" * (quiet.MAX_LOG_BYTES + 1))
    with quiet.cli_owns_stderr(), environment(pulled.env):
        quiet.route_logs("embctl_test_library")
        logging.getLogger("embctl_test_library").warning("after the turn")
    assert log.with_name("libraries.log.1").stat().st_size == quiet.MAX_LOG_BYTES + 1
    assert "after the turn" in log.read_text() and log.stat().st_size < 1000


# -- a real terminal -----------------------------------------------------------------------

def run_on_a_pty(embctl, args: tuple[str, ...], stdin: Path) -> tuple[int, str]:
    """``embctl ARGS < stdin`` with stderr on a pseudo-terminal: what the user would see."""
    import pty

    master, slave = pty.openpty()
    with open(stdin, "rb") as fin:
        proc = subprocess.Popen(embctl_argv(*args), env=embctl.env, stdin=fin,
                                stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other end closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.e2e  # stderr is a real terminal (a pty), and each run loads the model afresh
def test_a_terminal_sees_embctls_lines_only_and_with_v_the_libraries(pulled, tmp_path):
    model = noisy_model(tmp_path / "model")
    stdin = tmp_path / "in.jsonl"
    stdin.write_text(INPUT)
    code, tty = run_on_a_pty(pulled, ("embed", str(model)), stdin)
    assert code == 0, tty
    assert only_embctl_lines(tty) == [], tty
    assert not [n for n in NOISE if n in tty] and "Warning" not in tty, tty
    assert TRUNCATED in tty and "2 lines read, 2 embedded" in tty
    log = log_of(pulled).read_text()
    assert "UNEXPECTED" in log and "Token indices sequence length" in log
    code, loud = run_on_a_pty(pulled, ("embed", str(model), "-v", "--no-cache"), stdin)
    assert code == 0, loud
    assert "UNEXPECTED" in loud and "LOAD REPORT" in loud, loud
    assert "[transformers] Token indices sequence length" in loud, loud
    assert TRUNCATED in loud


def test_a_program_using_the_python_api_keeps_its_own_logging(pulled, caplog, recwarn):
    """Outside a CLI command (``embctl.load`` in the user's program) embctl leaves the
    libraries' logging and warnings as the program set them, and writes no log."""
    from embctl import quiet

    name = "embctl_test_api_library"
    library = logging.getLogger(name)
    mine = logging.NullHandler()
    library.addHandler(mine)
    try:
        with environment(pulled.env):
            assert quiet.verbose()  # the libraries may talk: it is the program's stderr
            quiet.route_logs(name)
            assert library.handlers == [mine] and library.propagate
            with caplog.at_level(logging.WARNING, logger=name):
                library.warning("the program sees this")
            with quiet.library_warnings():
                warnings.warn("and this", UserWarning, stacklevel=1)
        assert "the program sees this" in caplog.text
        assert [str(w.message) for w in recwarn] == ["and this"]
        assert not log_of(pulled).exists()
    finally:
        library.removeHandler(mine)
