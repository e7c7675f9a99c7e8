"""The commit habit, as the hook in .githooks/commit-msg enforces it: subject ≤ 72 characters, a blank line, a body;
"Merge …" only during a real merge."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[1] / ".githooks" / "commit-msg"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the hook is a bash script")


def run_hook(tmp_path: Path, message: str, merging: bool = False) -> subprocess.CompletedProcess:
    git_dir = tmp_path / ".git"
    git_dir.mkdir(exist_ok=True)
    if merging:
        (git_dir / "MERGE_HEAD").write_text("0" * 40 + "\n")
    path = tmp_path / "COMMIT_EDITMSG"
    path.write_text(message)
    return subprocess.run(["bash", str(HOOK), str(path)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "GIT_DIR": str(git_dir)})  # fmt: skip


@pytest.mark.parametrize(
    "message, problem",
    [
        ("Add a thing\n\nBecause the gate missed 20% slowdowns.\n", None),
        ("Add a thing\n\nWhy.\n# Please enter the commit message\n", None),
        ("x" * 73 + "\n\nwhy\n", "subject is 73 characters; at most 72"),
        ("Add a thing\n", "no body"),
        ("Add a thing\nwhy, on the second line\n", "the second line must be blank"),
        ("Merge the redesign\n\nwhy\n", "for a real merge only"),
        ("\n\nbody only\n", "empty subject"),
        ("fixup! Add a thing\n", None),
    ],
)
def test_the_hook_takes_a_subject_a_blank_line_and_a_body(tmp_path, message, problem):
    res = run_hook(tmp_path, message)
    assert (res.returncode == 0) == (problem is None), res.stderr
    if problem:
        assert problem in res.stderr


def test_a_real_merge_may_say_merge_without_a_body(tmp_path):
    assert run_hook(tmp_path, "Merge branch 'redesign'\n", merging=True).returncode == 0
