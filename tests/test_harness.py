"""The test harness's own promises (docs/testing.md): a linked home shares only blobs, damage
never reaches the shared copy, the guard sees a write into a shared blob, and an in-process
run leaves the test process as it found it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from support.homes import BlobGuard, damage, link_home
from support.runner import Embctl


def _home(root: Path) -> Path:
    blobs = root / "hf" / "hub" / "models--acme--m" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "abc").write_bytes(b"weights" * 100)
    (root / "embctl").mkdir()
    (root / "embctl" / "usage.json").write_text("{}")
    return root


def test_a_linked_home_shares_blobs_only_and_damage_stays_private(tmp_path):
    shared = _home(tmp_path / "shared")
    guard = BlobGuard(shared)
    copy = link_home(shared, tmp_path / "copy")
    blob = copy / "hf/hub/models--acme--m/blobs/abc"
    assert os.path.samefile(blob, shared / "hf/hub/models--acme--m/blobs/abc")
    assert not os.path.samefile(copy / "embctl/usage.json", shared / "embctl/usage.json")
    damage(blob)
    assert blob.read_bytes()[0] != ord("w") and guard.changed() == []
    with open(copy / "hf/hub/models--acme--m/blobs/abc", "r+b") as fh:  # its own file now
        fh.write(b"x")
    assert guard.changed() == []
    again = link_home(shared, tmp_path / "again")
    with open(again / "hf/hub/models--acme--m/blobs/abc", "r+b") as fh:  # through the link
        fh.write(b"x")
    assert guard.changed() == [str(shared / "hf/hub/models--acme--m/blobs/abc")]


def test_an_in_process_run_leaves_the_process_as_it_was(tmp_path):
    before = (dict(os.environ), list(sys.path), sys.stdin, sys.stdout, sys.stderr,
              signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    run = Embctl.at(tmp_path, EMBCTL_SOMETHING="1", PYTHONPATH=str(tmp_path / "site"))
    proc = run("ls", "--json")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
    bad = run("ls", "--filter", "nonsense")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    after = (dict(os.environ), list(sys.path), sys.stdin, sys.stdout, sys.stderr,
             signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert after == before
