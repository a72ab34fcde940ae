"""The fenced code blocks of a Markdown page, each with its language and line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# An opening or closing fence: up to any indentation (blocks inside list items are
# indented), three or more backticks or tildes, then the info string.
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


class MalformedPage(ValueError):
    """A fence that is never closed: everything after it would be one hidden block."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str  # first word of the info string; "" when there is none
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"


def _closes(line: str, fence: str) -> bool:
    match = FENCE.match(line)
    return bool(
        match
        and match["fence"][0] == fence[0]
        and len(match["fence"]) >= len(fence)
        and not match["info"].strip()
    )


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t")


def blocks(page: Path) -> list[Block]:
    """Every fenced block of `page`, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start, fence, indent = index + 1, match["fence"], match["indent"]
        info = match["info"].strip()
        language = info.split()[0] if info else ""
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(_dedent(lines[index], indent))
            index += 1
        if index == len(lines):
            raise MalformedPage(f"{page.name}:{start}: a code fence that is never closed")
        found.append(Block(page, start, language, "\n".join(body) + "\n"))
        index += 1
    return found
