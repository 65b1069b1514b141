"""Shell completions: the checked-in scripts match the click app; references complete from the
cache."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "embctl.bash", "zsh": "_embctl", "fish": "embctl.fish"}


@pytest.mark.parametrize("shell", sorted(FILES))
def test_checked_in_script_is_current(embctl, shell):
    proc = embctl("completion", shell)
    assert proc.returncode == 0, proc.stderr
    checked_in = (ROOT / "completions" / FILES[shell]).read_text()
    assert proc.stdout == checked_in, (
        f"completions/{FILES[shell]} is stale: run `embctl completion {shell} > "
        f"completions/{FILES[shell]}`"
    )


def complete(run, words: str, cword: int) -> list[str]:
    proc = run(env={"COMP_WORDS": words, "COMP_CWORD": str(cword),
                    "_EMBCTL_COMPLETE": "bash_complete"})
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_references_complete_from_the_cache(pulled):
    assert complete(pulled, "embctl rm al", 2) == ["all-MiniLM-L6-v2"]
    assert "sentence-transformers/all-MiniLM-L6-v2" in complete(pulled, "embctl verify sen", 2)
    assert "bge-small-en-v1.5" in complete(pulled, "embctl pull bge", 2)  # aliases for pull
    assert complete(pulled, "embctl ve", 1) == ["verify"]
