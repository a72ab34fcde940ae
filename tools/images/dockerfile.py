"""Which files of the build context a Dockerfile target takes: the sources of the COPY
(and ADD) instructions of the stages that target is built from. Only those are inputs of
its image: an edit under tests/ rebuilds the api's dev image (which copies tests/) but
not the runner's.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::[-+][^}]*)?\}|(\w+))")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def _flags(rest: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(rest)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


@dataclass
class _Stage:
    name: str | None
    base: str
    context_sources: list[str] = field(default_factory=list)
    stage_sources: set[str] = field(default_factory=set)  # COPY --from=<stage>
    binds_context: bool = False  # RUN --mount=type=bind without from=: all of it


def copy_sources(path: Path, target: str | None, build_args: Mapping[str, str]) -> list[str] | None:
    """The context paths `target` (None: the last stage) copies, or None when it can
    read the whole context (a RUN bind mount of it)."""
    args: dict[str, str] = {}
    stages: list[_Stage] = []

    def substitute(text: str) -> str:
        return _VARIABLE.sub(lambda m: args.get(m[1] or m[2], ""), text)

    for keyword, rest in _instructions(path.read_text()):
        if keyword == "ARG":
            for word in shlex.split(rest):
                name, _, default = word.partition("=")
                args[name] = build_args.get(name, args.get(name, default))
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(_Stage(name, substitute(words[0])))
        elif keyword in ("COPY", "ADD"):
            flags, words = _flags(rest)
            if "from" in flags:
                stages[-1].stage_sources.add(substitute(flags["from"]))
            else:
                stages[-1].context_sources += [substitute(w) for w in words[:-1]]
        elif keyword == "RUN" and re.search(r"--mount=(?![^ ]*from=)[^ ]*type=bind", rest):
            stages[-1].binds_context = True

    by_name = {s.name: s for s in stages if s.name}
    wanted = [by_name[target] if target else stages[-1]]
    sources: list[str] = []
    seen: set[int] = set()
    while wanted:
        stage = wanted.pop()
        if id(stage) in seen:
            continue
        seen.add(id(stage))
        if stage.binds_context:
            return None
        sources += stage.context_sources
        parents = [stage.base, *stage.stage_sources]
        wanted += [by_name[p] for p in parents if p in by_name]
    return sorted(set(sources))


def taken(files: list[str], sources: list[str] | None) -> list[str]:
    """The context files (relative paths) a COPY of `sources` takes."""
    if sources is None:
        return files
    patterns = [s.strip("/").removeprefix("./") or "." for s in sources]
    chosen = []
    for rel in files:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(p == "." or any(fnmatch.fnmatchcase(x, p) for x in prefixes) for p in patterns):
            chosen.append(rel)
    return chosen
