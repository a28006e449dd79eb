"""The README and docs/ stay true for someone with only a clone: the README's Python example
runs, every relative link and anchor resolves, the README lists every doc, and no doc leans
on references outside the repository (a sibling `shared/` tree, internal issue numbers)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [
    README,
    *DOCS,
    ROOT / "deploy" / "README.md",
    ROOT / "benchmarks" / "README.md",
    ROOT / "tests" / "fixtures" / "chatwoot" / "README.md",
]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


# -- the README's Python example ---------------------------------------------------------


def test_python_blocks_of_readme_and_docs_compile() -> None:
    blocks = [(page, block) for page in PAGES for block in python_blocks(page)]
    assert any(page == README for page, _ in blocks)
    for page, block in blocks:
        compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_readme_python_example_is_a_complete_program_that_runs(
    redis_url: str, queue_name: str
) -> None:
    """Run exactly as printed, on the test Redis and a queue of the test's own."""
    (program,) = [b for b in python_blocks(README) if "asyncio.run(main())" in b]
    assert program.startswith("import asyncio\n")
    assert program.count('Queue("example"') == 1
    program = program.replace('Queue("example"', f'Queue("{queue_name}"')
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT / "src")}
    try:
        result = subprocess.run(
            [sys.executable, "-c", program],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"sluice:{{{queue_name}}}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "conversation 7:418 says 'hi'"
    assert lines[-1].startswith("completed {")
    assert "'reply_sent'" in lines[-1]  # the handler's own hop was stored with the job


# -- links ---------------------------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        anchor, n = slug, 1
        while anchor in found:
            anchor, n = f"{slug}-{n}", n + 1
        found.add(anchor)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = file.suffix == ".md" and bool(fragment)
        if not file.exists() or (missing_anchor and fragment not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_readme_links_every_doc() -> None:
    text = README.read_text()
    missing = [doc.name for doc in DOCS if f"(docs/{doc.name})" not in text]
    assert not missing, f"docs not linked from README.md: {missing}"


# -- nothing that only makes sense inside the team ------------------------------------------

INTERNAL = {
    "a sibling tree of the workspace": r"\.\./shared|\bshared/docs\b|\bmain/docs\b",
    "a fixture by number": r"\bfixtures?\s+\d",
    "an internal issue": r"\bthe\s+(?:\w+\s+)?issue\b(?!\s+#)|\bissue\s+\d|\bissue\s+asks\b",
    "a search index's ids": r"\bid=\d{5,}|\bids \d{6,}",
    "a stored copy": r"\bstored (?:snapshot|thread)s?\b",
    "team jargon": r"\bthe\s+CEO\b|\bwaves?\s+\d|\bour\s+docs\b",
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_use_no_internal_references(page: Path) -> None:
    text = page.read_text()
    found = [
        f"{what}: {m.group(0)!r}"
        for what, pattern in INTERNAL.items()
        for m in re.finditer(pattern, text, flags=re.IGNORECASE)
    ]
    assert not found, f"{page.relative_to(ROOT)}: {found}"
