"""Dockerfile.api and Dockerfile.runner as data (stages, ARG/ENV values, COPY sources),
.dockerignore's rules, and what the images may take from their base."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE_API = REPO / "Dockerfile.api"
DOCKERFILE_RUNNER = REPO / "Dockerfile.runner"
DOCKERIGNORE = REPO / ".dockerignore"

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<plain>\w+))")
_FLAG = re.compile(r"--(?P<name>[\w-]+)(?:=(?P<value>\S*))?")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Docker's variable substitution: $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word}."""

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        value = values.get(name, "")
        if match["op"] == "-":
            return value or match["word"]
        if match["op"] == "+":
            return match["word"] if value else ""
        return value

    return _VARIABLE.sub(replace, text)


@dataclass
class Instruction:
    name: str  # upper case: RUN, COPY, ...
    value: str  # continuation lines joined, as written
    line: int  # 1-based, where it starts

    def split_flags(self) -> tuple[dict[str, str], str]:
        """Leading `--name=value` options (RUN --mount, COPY --from, HEALTHCHECK
        --interval...) and the rest of the value."""
        flags: dict[str, str] = {}
        rest = self.value.strip()
        while match := _FLAG.match(rest):
            flags[match["name"]] = match["value"] or ""
            rest = rest[match.end() :].lstrip()
        return flags, rest

    @property
    def command(self) -> str:
        return self.split_flags()[1]

    def exec_form(self) -> list[str]:
        """CMD/ENTRYPOINT (or HEALTHCHECK ... CMD) in JSON exec form."""
        rest = self.command
        if self.name == "HEALTHCHECK":
            keyword, _, rest = rest.partition(" ")
            assert keyword.upper() == "CMD", f"line {self.line}: HEALTHCHECK {keyword}"
        words = json.loads(rest)
        assert isinstance(words, list) and all(isinstance(w, str) for w in words), rest
        return words


@dataclass
class Stage:
    name: str | None
    base: str  # as written: an image, ${ARG}, or an earlier stage
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]

    def last(self, name: str) -> Instruction | None:
        found = self.all(name)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        with path.open("rb") as f:
            structure = DockerfileParser(fileobj=f).structure
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for item in structure:
            insn = Instruction(item["instruction"], item["value"], item["startline"] + 1)
            if insn.name == "COMMENT":
                continue
            if insn.name == "FROM":
                words = insn.value.split()
                words = [w for w in words if not w.startswith("--platform")]
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
                stages.append(Stage(name, words[0], insn.line))
            elif not stages:
                assert insn.name == "ARG", f"{path.name}:{insn.line}: {insn.name} before FROM"
                global_args.update(parse_arg(insn.value))
            else:
                stages[-1].instructions.append(insn)
        return cls(path, global_args, stages)

    @property
    def stage_names(self) -> list[str | None]:
        return [s.name for s in self.stages]

    @property
    def final(self) -> Stage:
        """The stage `docker build` builds without --target."""
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path.name} has no stage {name!r}: {self.stage_names}")

    def exec_form(self, stage: str, name: str) -> list[str]:
        """A stage's CMD or HEALTHCHECK command, as the image runs it."""
        instruction = self.stage(stage).last(name)
        assert instruction is not None, f"{self.path.name}: {stage} has no {name}"
        return instruction.exec_form()

    def base_image(self, stage: Stage, build_args: Mapping[str, str] | None = None) -> str:
        """The image (or earlier stage) a stage starts from, ARGs substituted."""
        return substitute(stage.base, {**self.global_args, **(build_args or {})})

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built on, oldest first."""
        stages = [self.stage(name)]
        while stages[0].base in self.stage_names:
            stages.insert(0, self.stage(stages[0].base))
        return stages

    def stage_env(
        self, name: str, build_args: Mapping[str, str], base_env: Mapping[str, str]
    ) -> dict[str, str]:
        """The ENV a stage's image ends with (its parents' included)."""
        env = dict(base_env)
        for stage in self.chain(name):
            args = dict(self.global_args) | dict(build_args)
            scope: dict[str, str] = {}
            for insn in stage.instructions:
                if insn.name == "ARG":
                    scope.update(resolve_args(insn.value, args))
                elif insn.name == "ENV":
                    env.update(parse_env(insn.value, {**scope, **env}))
        return env


def parse_arg(value: str) -> dict[str, str]:
    """`ARG NAME` or `ARG NAME=default` (one or more); no default is an empty string."""
    parsed = {}
    for word in shlex.split(value):
        name, _, default = word.partition("=")
        parsed[name] = default
    return parsed


def resolve_args(value: str, build_args: Mapping[str, str]) -> dict[str, str]:
    """An ARG inside a stage: a build arg (or global ARG) wins over its own default."""
    values = {}
    for word in shlex.split(value):
        name, has_default, default = word.partition("=")
        if name in build_args:
            values[name] = build_args[name]
        elif has_default:
            values[name] = default
    return values


def parse_env(value: str, scope: Mapping[str, str]) -> dict[str, str]:
    """`ENV K=V [K2=V2 ...]` (or the old `ENV K V`), substituted with `scope`."""
    words = shlex.split(value)
    if "=" not in words[0]:
        return {words[0]: substitute(value.split(None, 1)[1], scope)}
    env = {}
    for word in words:
        name, _, raw = word.partition("=")
        env[name] = substitute(raw, scope)
    return env


# --- .dockerignore ------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher's translation of a Go filepath.Match pattern with `**`."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch in "[]^-":
            out += ch  # character classes pass through, as in Go
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


@dataclass
class DockerIgnore:
    """Which paths of the build context .dockerignore leaves out: Docker's rules (the
    last matching pattern wins, `!` lets a path back in, a pattern that matches a
    folder matches everything in it)."""

    patterns: list[tuple[bool, str, re.Pattern[str]]]  # (exception, cleaned, regex)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        patterns = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            cleaned = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            patterns.append((exception, cleaned, _pattern_regex(cleaned)))
        return cls(patterns)

    @classmethod
    def of_repo(cls) -> DockerIgnore:
        return cls.parse(DOCKERIGNORE.read_text())

    def excluded(self, path: str) -> bool:
        path = os.path.normpath(path)
        parents = [str(Path(*Path(path).parts[:n])) for n in range(1, len(Path(path).parts))]
        excluded = False
        for exception, _, regex in self.patterns:
            if regex.match(path) or any(regex.match(p) for p in parents):
                excluded = not exception
        return excluded

    def may_let_back_in_under(self, folder: str) -> bool:
        return any(
            exception and (cleaned.startswith(folder + "/") or "*" in cleaned)
            for exception, cleaned, _ in self.patterns
        )

    def context_files(self, root: Path = REPO) -> Iterator[str]:
        """The build context: every file under `root` not left out, relative, sorted."""
        for folder, dirs, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            dirs[:] = sorted(
                d
                for d in dirs
                if not (
                    self.excluded(os.path.join(rel, d))
                    and not self.may_let_back_in_under(os.path.normpath(os.path.join(rel, d)))
                )
            )
            for name in sorted(files):
                path = os.path.normpath(os.path.join(rel, name))
                if not self.excluded(path):
                    yield path


# What python:3.11-slim-bookworm ships that a shared library can come from: Debian
# bookworm-slim's own libraries and the Python image's run-time dependencies.
SLIM_IMAGE_PACKAGES = frozenset({
    # debian:bookworm-slim
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libbz2-1.0", "liblzma5", "libzstd1",
    "liblz4-1", "libcrypt1", "libselinux1", "libpcre2-8-0", "libacl1", "libattr1", "libblkid1",
    "libmount1", "libuuid1", "libsmartcols1", "libudev1", "libsystemd0", "libcap2", "libcap-ng0",
    "libaudit1", "libgcrypt20", "libgpg-error0", "libgmp10", "libgnutls30", "libhogweed6",
    "libnettle8", "libidn2-0", "libunistring2", "libp11-kit0", "libtasn1-6", "libffi8",
    "libtinfo6", "libdb5.3", "libseccomp2", "libxxhash0", "libmd0", "libpam0g", "libsemanage2",
    "libsepol2", "libapt-pkg6.0",
    # what the python image adds for its interpreter
    "libssl3", "libsqlite3-0", "libexpat1", "libncursesw6", "libreadline8", "libgdbm6",
    "ca-certificates", "netbase", "tzdata",
})  # fmt: skip
# Modules whose import loads native code the venv does not link statically (ctypes,
# dlopen), or that a command loads late: imported before /proc/self/maps is read.
RUNNER_MODULES = (
    "eccodes", "zyra.cli", "runner.__main__", "runner.zygote", "cartopy.crs", "rasterio",
    "netCDF4", "pygrib", "cfgrib", "pyproj", "shapely.geometry", "matplotlib.pyplot",
    "scipy.interpolate", "PIL.Image", "xarray", "rioxarray", "boto3", "redis", "yaml",
)  # fmt: skip
API_MODULES = (
    *RUNNER_MODULES, "api.server", "api.gunicorn_conf", "uvloop", "httptools", "websockets",
    "watchfiles", "gunicorn.app.wsgiapp", "kubernetes.client", "pydantic_settings",
)  # fmt: skip


def default_apt_packages(dockerfile: Dockerfile, stage: str) -> set[str]:
    """What a stage apt-gets without build args: its RUNTIME_APT_PACKAGES default."""
    found: set[str] = set()
    for insn in dockerfile.stage(stage).all("ARG"):
        found.update(resolve_args(insn.value, {}).get("RUNTIME_APT_PACKAGES", "").split())
    return found
