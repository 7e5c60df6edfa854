"""The repository stands alone: its docs, code and configs point at nothing outside it (no sibling
``shared/`` folder, no design notes that a clone lacks, no path of the machine it was written on), and
every relative Markdown link resolves to a file inside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()

#: The sibling folder's name, spelled apart so that this file does not itself point outside the repository.
SIBLING = "sha" + "red"
#: What a clone does not have: the folder beside the checkout and the notes it held.
OUTSIDE = [
    (re.compile(r"\.\./" + SIBLING + r"\b"), "the folder beside the checkout"),
    (re.compile(r"(?:^|[\s`'\"(\[])shared/(?=$|[\s`'\")]|fv3gfs|fixtures|hooks)"), "a sibling shared/ folder"),
    (re.compile(r"\b(?:DESIGN|SCHEMA)\.md\b"), "design notes kept outside the repository"),
    (re.compile(re.escape(str(REPO)) + r"\b"), f"this checkout's absolute path ({REPO})"),
    (re.compile(re.escape(str(REPO.parent)) + r"/(?:shared|\.library)\b"), "a folder beside this checkout"),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _repository_files() -> list[Path]:
    """Tracked files and new files git does not ignore (what a commit of this tree would hold)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.fail(f"cannot list the repository's files with git in {REPO}: {err}")
    files = [REPO / name for name in listed.split("\0") if name and name != THIS]
    return [p for p in files if p.is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (figures, fixtures)
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def test_nothing_refers_outside_the_repository():
    found = []
    for path in _repository_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern, what in OUTSIDE:
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()[:120]}")
    assert not found, "references outside the repository (a clone has none of these):\n" + "\n".join(found)


def test_relative_markdown_links_stay_inside_and_exist():
    broken = []
    for path in _repository_files():
        if path.suffix != ".md":
            continue
        for target in LINK.findall(path.read_text()):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(REPO):
                broken.append(f"{path.relative_to(REPO)}: {target} leads outside the repository")
            elif not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} does not exist")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("line", [f"see ../{SIBLING}/DESIGN.md", "in `shared/fv3gfs/` beside", "SCHEMA.md §1",
                                  f"cd {REPO} && make"])
def test_the_patterns_catch_what_they_are_for(line):
    assert any(pattern.search(line) for pattern, _ in OUTSIDE), line


@pytest.mark.parametrize("line", ["docker run -v fv3-demo:/work img  # -> /work/demo-run",
                                  "on the shared 2-core machine", "a shared/exclusive lock"])
def test_the_patterns_leave_ordinary_words_alone(line):
    assert not any(pattern.search(line) for pattern, _ in OUTSIDE), line
