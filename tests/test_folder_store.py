"""``FolderStore`` from the outside: a third-party plugin's store that says only where its
folder is and how to read one item, installed the way pip installs a plugin, and the real
``embctl ls``, ``du``, ``verify`` and ``rm`` over it (in process; no Hub needed).

Its items are folders under ``EMBCTL_HOME/notes``, each with a ``manifest.json`` naming the
model it belongs to; one has a nested folder, one a symlink to a file outside the store (never
followed, never counted, never deleted), one a manifest that does not read."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from support.runner import Embctl

PLUGIN = textwrap.dedent('''
    """A store of notes: EMBCTL_HOME/notes/<name>/ with a manifest.json and data files."""
    import json
    from pathlib import Path

    from embctl.plugin import Entry, FolderStore, embctl_home, files_size, hookimpl, last_used


    class NoteStore(FolderStore):
        kind = "note"
        du_lines = (("notes", "notes"),)
        noun = "note"

        def default_folder(self) -> Path:
            return embctl_home() / "notes"

        def read_item(self, path: Path) -> Entry | None:
            if not path.is_dir():
                return None
            files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
            size, used = files_size(files), last_used(files)
            try:
                manifest = json.loads((path / "manifest.json").read_text())
            except (OSError, ValueError) as exc:
                return Entry("note", path.name, None, None, None, None, size, str(path),
                             last_used=used, status="broken", extra={"error": str(exc)})
            return Entry("note", manifest["repo_id"], manifest["repo_id"], None,
                         manifest["revision"], None, size, str(path), last_used=used,
                         extra={"key": manifest["key"]})


    @hookimpl
    def register_stores(register):
        register(NoteStore)
''')
COMMIT = "1" * 40


@pytest.fixture
def notes(tmp_path: Path) -> Embctl:
    """A home with three notes, and the plugin installed (its dist-info and its module)."""
    site = tmp_path / "site"
    (site / "embctl_notes").mkdir(parents=True)
    (site / "embctl_notes" / "__init__.py").write_text(PLUGIN)
    dist = site / "embctl_notes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: embctl-notes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[embctl]\nnotes = embctl_notes\n")
    run = Embctl.at(tmp_path / "home", PYTHONPATH=str(site))
    root = run.home / "embctl" / "notes"
    for name, data in (("a", 1000), ("b", 2500)):
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text(json.dumps(
            {"repo_id": f"org/{name}", "revision": COMMIT, "key": f"{name * 4}1234"}))
        (root / name / "data.bin").write_bytes(b"x" * data)
    (root / "b" / "parts").mkdir()
    (root / "b" / "parts" / "p1").write_bytes(b"y" * 300)
    (tmp_path / "outside.bin").write_bytes(b"z" * 5000)
    os.symlink(tmp_path / "outside.bin", root / "b" / "outside.bin")
    (root / "c").mkdir()
    (root / "c" / "manifest.json").write_text("{")
    (root / ".locks").mkdir()  # hidden: not an item
    return run


def sizes(run: Embctl) -> dict[str, tuple[str, int]]:
    """ref -> (status, bytes) of the notes ls lists; the bytes as du adds them up."""
    rows = json.loads(run("ls", "--json", check=True).stdout)
    return {r["ref"]: (r["status"], r["size_bytes"]) for r in rows if r["kind"] == "note"}


def files_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file()
               and not p.is_symlink())


def test_ls_and_du_list_and_count_the_items(notes):
    root = notes.home / "embctl" / "notes"
    listed = sizes(notes)
    assert listed == {"org/a": ("ok", files_bytes(root / "a")),
                      "org/b": ("ok", files_bytes(root / "b")),
                      "c": ("broken", 1)}
    assert listed["org/b"][1] == 2500 + 300 + len((root / "b" / "manifest.json").read_bytes())
    usage = json.loads(notes("du", "--json", check=True).stdout)
    assert usage["notes"] == sum(size for _status, size in listed.values())
    assert "notes" in notes("du", check=True).stdout


def test_verify_reports_the_item_whose_manifest_does_not_read(notes):
    proc = notes("verify", "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["checked"]["notes"] == 3
    (problem,) = report["problems"]
    assert (problem["kind"], problem["ref"], problem["ok"]) == ("note", "c", False)
    assert problem["problems"][0].startswith("cannot be read:")
    text = notes("verify")
    assert "3 notes: 1 problem" in text.stderr and "c (note " in text.stdout + text.stderr
    assert notes("verify", "org/a", "--json", check=True).returncode == 0  # selected by REF


def test_rm_plans_removes_and_frees_what_du_counted(notes, tmp_path):
    root = notes.home / "embctl" / "notes"
    listed = sizes(notes)
    dry = json.loads(notes("rm", "org/b", "--dry-run", "--json", check=True).stdout)
    assert [(r["kind"], r["ref"], r["freed_bytes"]) for r in dry["removed"]] == \
        [("note", "org/b", listed["org/b"][1])]  # the nested file, not the symlink's target
    assert (root / "b").is_dir()
    assert json.loads(notes("rm", "--prune", "--dry-run", "--json", check=True).stdout
                      )["removed"] == []  # nothing of this store is ever left over
    notes("rm", "org/b", "-y", check=True)
    assert not (root / "b").exists() and (tmp_path / "outside.bin").stat().st_size == 5000
    assert notes("rm", "org/a", "--vectors", "-y").returncode == 1  # not a vector cache
    done = json.loads(notes("rm", "--filter", "kind=note", "-y", "--json", check=True).stdout)
    assert done["freed_bytes"] == listed["org/a"][1] + listed["c"][1]
    assert sorted(p.name for p in root.iterdir()) == [".locks"]
    assert sizes(notes) == {}
    assert json.loads(notes("du", "--json", check=True).stdout)["notes"] == 0
