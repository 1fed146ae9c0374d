"""The README and docs/: every relative link and anchor resolves, and the README stays a front page.

Links are read as GitHub renders them: inline links and images outside code, anchors by GitHub's heading
slugs (lower case, punctuation dropped, spaces to hyphens, -1, -2 ... for repeats). External links are not
fetched.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import REPO

README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path, root: Path) -> list[str]:
    """Every relative link of `page` whose file, or anchor in a Markdown file, does not exist."""
    problems = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), start=1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
            where = f"{page.relative_to(root)}:{number}: {target}"
            try:
                relative = resolved.relative_to(root).as_posix()
            except ValueError:
                problems.append(f"{where} (outside the repository)")
                continue
            if not resolved.exists():
                problems.append(f"{where} (no such file)")
                continue
            if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where} (no such heading in {relative})")
    return problems


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page, REPO) == []


def test_the_readme_is_a_front_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = REPO / "README.md"
    linked = {
        (REPO / target.partition("#")[0]).resolve()
        for line in prose_lines(readme.read_text(encoding="utf-8"))
        for target in LINK.findall(line)
    }
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == []


def test_the_checker_finds_a_missing_file_a_missing_anchor_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# A page\n\n## Logs: where, and how?\n\n## Logs: where, and how?\n"
    )
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n"
        "[ok](docs/a.md#logs-where-and-how) [repeat](docs/a.md#logs-where-and-how-1) [self](#title)\n"
        "![img](docs/missing.png) [gone](docs/a.md#logs) [web](https://example.org/x)\n"
        "[later](docs/later.md) `[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "README.md:4: docs/missing.png (no such file)",
        "README.md:4: docs/a.md#logs (no such heading in docs/a.md)",
        "README.md:5: docs/later.md (no such file)",
    ]
