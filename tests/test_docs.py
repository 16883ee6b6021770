"""The README is a front page whose links resolve; the repository speaks of the product, not its past."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Narration of the project's own past: an ordinal or relative word before "session", or "issue" and a number.
HISTORY = re.compile(
    r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
    r"fourteenth|fifteenth|sixteenth|\d+(?:st|nd|rd|th)|this|last|previous|next|earlier|later)\s+sessions?\b"
    r"|\bissues?\s+#?\d+",
    re.IGNORECASE,
)
TEXT_SUFFIXES = {".md", ".py", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".sh", ""}


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    return [ROOT / name for name in listed.split("\0") if name]


def test_readme_is_a_front_page_whose_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for heading in ("## Install", "## Test", "## Quickstart"):
        assert heading in text
    broken = [
        target
        for target in LINK.findall(text)
        if not target.startswith(("http://", "https://", "#"))
        and not (ROOT / target.split("#")[0]).exists()
    ]
    assert not broken, f"README links to missing files: {broken}"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    missing = [page for page in pages if f" {page}" not in nav]
    assert not missing, f"docs pages missing from the mkdocs.yml nav: {missing}"


def test_no_tracked_file_narrates_the_projects_history() -> None:
    found = []
    for path in _tracked_files():
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or path == Path(__file__):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if HISTORY.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "history talk in tracked files:\n" + "\n".join(found[:40])
