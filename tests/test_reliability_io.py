"""Issue #10, files and inputs: every path a user names fails as one line naming it (exit 2 when
the path cannot be used as given, 1 when writing fails), with no traceback and no temporary file
left behind; a full disk (/dev/full) on stdout or -o; lone surrogates in JSONL; a byte-order
mark mid-input with --lines; credentials in the openai base URL.

Everything runs on real files, the real test hub and the real all-MiniLM-L6-v2: in-process,
and as ``python -m embctl`` (the e2e tier) where a real file descriptor is the point: stdout on
/dev/full, a pipe closed early.  "Read-only folder" is a chmod 0555 folder, or /sys when
permission bits do not bind (root; /sys refuses new files to everyone).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.openai_server import TEST_KEY, Fault
from support.runner import Embctl, embctl_argv, one_line_error

MODEL = "all-MiniLM-L6-v2"
FULL = Path("/dev/full")
needs_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def temp_files(folder: Path) -> list[Path]:
    """What a failed write could leave behind: ``.NAME.PID.tmp`` files."""
    try:
        return [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    except OSError:
        return []


def readonly_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: chmod 0555, or /sys where permission bits do not
    bind (root)."""
    folder = tmp_path / "readonly"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        probe = candidate / ".embctl-probe"
        try:
            probe.touch()
        except OSError:
            return candidate
        probe.unlink()
    pytest.skip("no folder refuses new files here (root, and /sys is writable)")


def to_full_disk(run: Embctl, *args: str,
                 input: bytes | None = None) -> subprocess.CompletedProcess:
    """``embctl ARGS > /dev/full`` (e2e tests only)."""
    with open(FULL, "wb") as full:
        return subprocess.run(embctl_argv(*args), input=input, stdout=full,
                              stderr=subprocess.PIPE, env=run.env, timeout=300, text=False)


def error_of(proc: subprocess.CompletedProcess) -> str:
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert "Exception ignored" not in stderr, stderr
    return one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# -- lone surrogates ----------------------------------------------------------------------


SURROGATES = (b'{"id": 1, "text": "return guidelines"}\n'
              b'{"id": 2, "text": "a\\ud800b"}\n'  # a lone high surrogate, as a JSON escape
              b'{"id": 3, "text": "emoji \\ud83d\\ude00 as a valid pair"}\n'
              b'{"id": 4, "text": "fine", "meta": {"tags": ["\\udc00"]}}\n')  # a lone low one


def test_lone_surrogate_is_a_bad_line_with_its_number(pulled):
    failed = pulled("embed", MODEL, input=SURROGATES)
    assert failed.returncode == 1
    error = error_of(failed)
    assert "line 2:" in error and "lone surrogate" in error and "'text'" in error, error
    assert failed.stdout == b""

    skipped = pulled("embed", MODEL, "--on-error", "skip", input=SURROGATES)
    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr.decode()
    rows = [json.loads(line) for line in skipped.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, 3]
    assert rows[1]["text"] == "emoji \U0001f600 as a valid pair"
    err = skipped.stderr.decode()
    assert "line 2:" in err and "line 4:" in err and "'meta.tags[0]'" in err, err
    assert "4 lines read, 2 embedded" in err and "2 skipped" in err


# -- -o and export -o: paths that cannot be used --------------------------------------------


def test_unusable_output_path_is_refused_before_the_model_is_pulled(embctl, tmp_path, hub):
    folder = tmp_path / "out"
    folder.mkdir()
    cases = [
        (tmp_path / "missing" / "v.jsonl", 2, "does not exist"),
        (tmp_path / "missing" / "v.npy", 2, "does not exist"),
        (folder, 2, "is a folder"),  # used to run to the end, fail on rename, leave .out.PID.tmp
        (readonly_folder(tmp_path) / "v.jsonl", 1, "cannot create a file in"),
    ]
    for path, code, message in cases:
        proc = embctl("embed", MODEL, "-o", str(path), input=jsonl([{"text": "hello"}]))
        assert proc.returncode == code, (path, proc.stderr)
        error = error_of(proc)
        assert f"-o {path}:" in error and message in error, error
        assert temp_files(path.parent) == [] and temp_files(tmp_path) == []
    assert not embctl.repo_dir.exists() and hub.requests == []  # refused before any work


@needs_full
@pytest.mark.e2e  # stdout is /dev/full, and -o /dev/stdout is the process's own stdout
def test_full_disk_on_stdout_and_o_loses_nothing_and_leaves_nothing(pulled, tmp_path):
    texts = ["The refund policy allows returns within 30 days", "return guidelines",
             "weather forecast"]
    data = jsonl([{"id": i, "text": t} for i, t in enumerate(texts)]).encode()
    proc = to_full_disk(pulled, "embed", MODEL, input=data)
    assert proc.returncode == 1
    assert error_of(proc) == "embctl: error: cannot write to stdout: No space left on device"
    # The vectors paid for were committed before the failure: the rerun computes nothing.
    again = pulled("embed", MODEL, input=data)
    assert again.returncode == 0, again.stderr
    assert "3 cache hits, 0 computed" in again.stderr.decode()
    reference = [json.loads(line)["embedding"] for line in again.stdout.splitlines()]

    for fmt in ("jsonl", "npy", "parquet"):
        proc = pulled("embed", MODEL, "-o", str(FULL), "--format", fmt, input=data)
        assert proc.returncode == 1, (fmt, proc.stderr)
        assert error_of(proc) == f"embctl: error: -o {FULL}: cannot write: No space left on device"
    assert stat.S_ISCHR(FULL.stat().st_mode)  # written in place, never renamed over
    assert temp_files(FULL.parent) == []

    # A device named as -o is written in place: /dev/stdout is this process's stdout.
    was_link = os.path.islink("/dev/stdout")
    proc = pulled.process("embed", MODEL, "-o", "/dev/stdout", input=data)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line)["embedding"] for line in proc.stdout.splitlines()]
    assert np.array_equal(np.array(got), np.array(reference))
    assert os.path.islink("/dev/stdout") == was_link and temp_files(Path("/dev")) == []
    # ... also when that stdout is a regular file (`> out.jsonl`): /dev/stdout is never
    # renamed over (it was, replacing the system's link with a file).
    with open(tmp_path / "stdout.jsonl", "wb") as out:
        proc = subprocess.run(embctl_argv("embed", MODEL, "-o", "/dev/stdout"), input=data,
                              stdout=out, stderr=subprocess.PIPE, env=pulled.env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line)["embedding"] for line in (tmp_path / "stdout.jsonl").open()]
    assert np.array_equal(np.array(got), np.array(reference))
    assert os.path.islink("/dev/stdout") == was_link and temp_files(Path("/dev")) == []

    # export --vectors -o: the same paths, the same answers.
    for fmt in ("npy", "safetensors", "parquet", "jsonl"):
        proc = pulled("export", MODEL, "--vectors", "-o", str(FULL), "--format", fmt)
        assert proc.returncode == 1, (fmt, proc.stderr)
        assert error_of(proc) == f"embctl: error: -o {FULL}: cannot write: No space left on device"
    assert temp_files(FULL.parent) == []
    folder = tmp_path / "exports"
    folder.mkdir()
    for path, code, message in [
        (tmp_path / "missing" / "v.npy", 2, "does not exist"),
        (folder, 2, "is a directory"),
        (readonly_folder(tmp_path) / "v.safetensors", 1, "cannot create a file in"),
    ]:
        proc = pulled("export", MODEL, "--vectors", "-o", str(path))
        assert proc.returncode == code, (path, proc.stderr)
        error = error_of(proc)
        assert str(path) in error and message in error, error
        assert temp_files(path.parent) == [] and temp_files(tmp_path) == []
    ok = pulled("export", MODEL, "--vectors", "-o", str(folder / "v.npy"))
    assert ok.returncode == 0, ok.stderr
    assert np.load(folder / "v.npy").shape == (3, 384)


@needs_full
@pytest.mark.e2e  # stdout is /dev/full
def test_every_command_on_a_full_stdout_is_one_line(pulled):
    for args in (["ls"], ["ls", "--json"], ["du"], ["du", "--json"], ["plugins"],
                 ["completion", "bash"], ["--help"], ["--version"], ["embed", "--help"]):
        proc = to_full_disk(pulled, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert error_of(proc) == "embctl: error: cannot write to stdout: No space left on device"


@pytest.mark.e2e  # `| head`: a real pipe its reader closes
def test_a_closed_pipe_is_still_not_an_error(pulled):
    proc = subprocess.run(f"{shlex.join(embctl_argv('completion', 'bash'))} | head -c 10",
                          shell=True, capture_output=True, text=True, env=pulled.env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.e2e  # a real pipe its reader closes
def test_embed_into_a_pipe_closed_early_exits_0_and_keeps_what_it_computed(pulled):
    """`embctl embed ... | head`: the reader goes away after the first window; the run stops
    quietly (exit 0, as `ls | head`) and commits what it computed, which a rerun hits."""
    texts = "".join(f"sentence number {i} about refunds\n" for i in range(1100))
    proc = subprocess.Popen(embctl_argv("embed", MODEL, "--lines"), env=pulled.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(texts.encode())
    proc.stdin.close()
    assert proc.stdout.read(100)  # the first vectors arrived; then the reader goes away
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr, stderr
    again = pulled("embed", MODEL, "--lines", input=texts, check=True)
    hits = int(again.stderr.split(" cache hits")[0].rsplit("(", 1)[1].replace(",", ""))
    assert hits > 0, again.stderr


def test_export_to_a_device_or_under_a_file_is_refused(pulled, tmp_path):
    if FULL.exists():
        proc = pulled("export", MODEL, "--to", str(FULL), "--force")
        assert proc.returncode == 2
        assert "exists and is not a folder" in error_of(proc)
        assert stat.S_ISCHR(FULL.stat().st_mode)  # --force never replaces a device
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = pulled("export", MODEL, "--to", str(afile / "minilm"))
    assert proc.returncode == 2
    assert f"--to {afile / 'minilm'}: {afile} is a file, not a folder" in error_of(proc)
    proc = pulled("export", MODEL, "--to", str(afile))
    assert proc.returncode == 2 and "is a file" in error_of(proc)
    assert afile.read_text() == "x" and temp_files(tmp_path) == []


# -- inputs and folders ---------------------------------------------------------------------


def test_input_paths_name_the_file(embctl, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for path, message in [(tmp_path / "missing.jsonl", "No such file"),
                          (folder, "Is a directory")]:
        proc = embctl("embed", MODEL, "-i", str(path))
        assert proc.returncode == 2
        error = error_of(proc)
        assert f"-i {path}:" in error and message in error, error
    assert not embctl.repo_dir.exists()
    for args, message in [(["--from", str(tmp_path / "missing")], "does not exist"),
                          (["--from", str(tmp_path / "missing.jsonl")], "does not exist")]:
        proc = embctl("pull", "org/model", *args)
        assert proc.returncode == 2
        error = error_of(proc)  # click's usage errors are one line too
        assert str(tmp_path / "missing") in error and message in error, error
    (tmp_path / "afile").write_text("x")
    proc = embctl("pull", "org/model", "--from", str(tmp_path / "afile"))
    assert proc.returncode == 2 and "is a file" in error_of(proc)
    proc = embctl("pull", "org/model", "--from", str(folder))  # a folder, but not a model
    assert proc.returncode == 1 and f"--from {folder}:" in error_of(proc)


def test_unreadable_input_and_read_only_output_files(embctl, tmp_path):
    if readonly_folder(tmp_path) != tmp_path / "readonly":
        pytest.skip("permission bits do not bind here (root)")
    locked = tmp_path / "locked.jsonl"
    locked.write_text('{"text": "x"}\n')
    locked.chmod(0o000)
    proc = embctl("embed", MODEL, "-i", str(locked))
    assert proc.returncode == 2 and f"-i {locked}: Permission denied" in error_of(proc)
    kept = tmp_path / "kept.jsonl"
    kept.write_text("keep me\n")
    kept.chmod(0o444)
    proc = embctl("embed", MODEL, "-o", str(kept), input='{"text": "x"}\n')
    assert proc.returncode == 1 and f"-o {kept}: the file is read-only" in error_of(proc)
    assert kept.read_text() == "keep me\n" and temp_files(tmp_path) == []
    unreadable = tmp_path / "model"
    unreadable.mkdir()
    unreadable.chmod(0o000)
    proc = embctl("pull", "org/model", "--from", str(unreadable))
    assert proc.returncode == 2 and "is not readable" in error_of(proc)
    assert not embctl.repo_dir.exists()


def test_cache_dir_and_embctl_home_that_cannot_be_used(pulled, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    under = afile / "cache"
    for args in (["pull", MODEL], ["ls"], ["du"], ["verify"], ["rm", MODEL, "-y"],
                 ["export", MODEL, "--to", str(tmp_path / "x")], ["embed", MODEL]):
        proc = pulled(*args, "--cache-dir", str(afile), input="")
        assert proc.returncode == 2, (args, proc.stderr)
        assert str(afile) in error_of(proc)
        proc = pulled(*args, "--cache-dir", str(under), input="")
        assert proc.returncode == 2, (args, proc.stderr)
        error = error_of(proc)
        assert f"--cache-dir {under}: {afile} is a file, not a folder" in error, error
    missing = tmp_path / "no-such-cache"
    for args in (["ls"], ["du"], ["verify"], ["rm", "--prune", "-y"]):
        proc = pulled(*args, "--cache-dir", str(missing))  # a typo is not an empty cache
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"--cache-dir {missing}: no such folder" in error_of(proc)
    assert not missing.exists()

    ro = readonly_folder(tmp_path) / "cache"
    proc = pulled("pull", MODEL, "--cache-dir", str(ro))
    assert proc.returncode == 1, proc.stderr
    assert str(ro) in error_of(proc)

    for home in (afile, under):
        env = {"EMBCTL_HOME": str(home)}
        for args in (["ls"], ["du"], ["verify"], ["rm", MODEL, "--vectors", "-y"], ["embed", MODEL],
                     ["export", MODEL, "--vectors", "-o", str(tmp_path / "v.npy")]):
            proc = pulled(*args, input=jsonl([{"text": "hello"}]), env=env)
            assert proc.returncode == 2, (home, args, proc.stderr)
            error = error_of(proc)
            assert f"EMBCTL_HOME {home}:" in error and "is a file, not a folder" in error, error
    assert afile.read_text() == "x"


# -- --lines and byte-order marks -----------------------------------------------------------


def test_lines_removes_a_byte_order_mark_mid_input_with_a_warning(pulled, tmp_path):
    first = tmp_path / "a.txt"
    first.write_bytes(b"\xef\xbb\xbfreturn guidelines\nweather forecast\n")
    second = tmp_path / "b.txt"
    second.write_bytes(b"\xef\xbb\xbfthe refund policy\r\n")
    third = tmp_path / "c.txt"
    third.write_bytes(b"\xef\xbb\xbfreturn guidelines\n")
    # cat a.txt b.txt c.txt | embctl embed --lines
    data = first.read_bytes() + second.read_bytes() + third.read_bytes()
    proc = pulled("embed", MODEL, "--lines", input=data)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["return guidelines", "weather forecast",
                                         "the refund policy", "return guidelines"]
    assert rows[3]["embedding"] == rows[0]["embedding"]  # the same text, the same vector
    err = proc.stderr.decode()
    warnings = [line for line in err.splitlines() if "byte-order mark" in line]
    assert warnings == ["embctl: warning: line 3 and 1 more: byte-order mark removed from the "
                        "start of the line (concatenated files?)"], err
    assert "1 duplicate)" in err or "1 cache hit," in err, err  # keyed without the BOM
    # Each file on its own gives the same vectors: all cache hits.
    alone = pulled("embed", MODEL, "--lines", "-i", str(second))
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["embedding"] == rows[2]["embedding"]
    assert "1 cache hit, 0 computed" in alone.stderr
    assert "byte-order mark" not in alone.stderr  # at the start of the input: accepted


# -- openai: credentials in the base URL ----------------------------------------------------


KEY = TEST_KEY  # the fake server's (fixtures `fake` and `oa` in conftest.py)


def derived_forms(user: str, key: str) -> list[str]:
    """What an echoing server could print of the key."""
    basic = base64.b64encode(f"{user}:{key}".encode()).decode()
    plain = base64.b64encode(key.encode()).decode()
    return [key, key[8:], basic, basic.rstrip("="), plain, plain.rstrip("="),
            base64.urlsafe_b64encode(f"{user}:{key}".encode()).decode()]


@pytest.mark.parametrize("where", ["--base-url", "OPENAI_BASE_URL"])
def test_credentials_in_the_base_url_are_refused_unsent_and_unechoed(oa, fake, where):
    host = fake.url.removeprefix("http://")
    url = f"http://someone:{KEY}@{host}"
    args = ["--base-url", url] if where == "--base-url" else []
    env = {"OPENAI_BASE_URL": url} if where == "OPENAI_BASE_URL" else {}
    proc = oa("embed", "openai:test-embed", "--lines", *args, input="hello\n", env=env)
    assert proc.returncode == 2
    error = error_of(proc)
    assert error.startswith(f"embctl: error: {where} http://***@{host}: credentials in the URL"), \
        error
    for form in derived_forms("someone", KEY) + ["someone"]:
        assert form not in proc.stderr + proc.stdout, form
    assert fake.log == []  # nothing was sent


def test_an_echoed_authorization_header_and_encoded_key_are_redacted(oa, fake):
    """A hostile server echoing the header, and each encoding of the key it could make."""
    oa.env["OPENAI_BASE_URL"] = fake.url
    forms = derived_forms("someone", KEY)
    echoes = ["{authorization}", f"Basic {forms[2]}", f"Bearer {KEY}", *forms]
    for echo in echoes:
        fake.add_faults(Fault(status=401, message=f"you sent: {echo} (sorry)"),
                                 clear=True)
        proc = oa("embed", "openai:test-embed", "--lines", input="hello\n",
                  env={"OPENAI_LOG": "debug"})
        assert proc.returncode == 1, proc.stderr
        error = error_of(proc)
        assert "authentication failed" in error and "you sent: " in error, error
        assert "***" in error and "(sorry)" in error, error  # the echo arrived, masked
        for form in forms:
            assert form not in proc.stderr, (echo, form, proc.stderr)
        # not even the part of the base64 that encodes the key alone
        assert base64.b64encode(KEY.encode()).decode()[4:24] not in proc.stderr, proc.stderr
