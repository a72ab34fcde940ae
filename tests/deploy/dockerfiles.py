"""Dockerfile.api and Dockerfile.runner as data, their build context, and their build
stages replayed on this machine (there is no Docker engine here).

The replay does what `docker build` does for a stage, with this machine standing in
for the base image: ARG/ENV values (build args override ARG defaults, as with
`--build-arg`), WORKDIR, COPY from the build context that .dockerignore lets through,
and each RUN through `sh -c` with the ARG and ENV values in its environment. The
container's root directory is a temporary folder; `python` is this interpreter's base
Python. RUN flags (`--mount=type=cache,...`) are build-engine options, not part of
the command, so they are dropped; PIP_CACHE_DIR from this environment plays the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.deploy.layer_cache import LayerCache, tree_digest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE_API = REPO / "Dockerfile.api"
DOCKERFILE_RUNNER = REPO / "Dockerfile.runner"
DOCKERIGNORE = REPO / ".dockerignore"

# RUN lines that administer the operating system (users, Debian packages): checked
# as text by the tests, never executed on this machine.
SYSTEM_COMMANDS = (
    "groupadd",
    "useradd",
    "usermod",
    "apt-get",
    "install -d",
    "rm -rf /var/lib/apt/",
)

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


def is_system_command(command: str) -> bool:
    """Every `&&`-joined part administers users or Debian packages (or the RUN is an
    `if` around such parts)."""
    parts = [p.strip() for p in re.split(r"&&|;|\bthen\b|\bfi\b", command) if p.strip()]
    parts = [p for p in parts if not p.startswith("if [")]
    return bool(parts) and all(p.startswith(SYSTEM_COMMANDS) for p in parts)


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


def copy_context(dest: Path, root: Path = REPO) -> list[str]:
    """Copy the build context .dockerignore lets through to `dest`."""
    files = list(DockerIgnore.of_repo().context_files(root))
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return files


# --- replaying build stages -------------------------------------------------------------


@dataclass
class StepTiming:
    line: int
    text: str
    seconds: float
    cached: bool = False  # put back from the layer cache, not run


def _made_from(env: Mapping[str, str]) -> dict[str, str]:
    """What of a step's environment can change what it makes: not where pip keeps its
    cache nor the proxies it goes through (as Docker leaves a cache mount out)."""
    return {
        name: value
        for name, value in env.items()
        if name != "PIP_CACHE_DIR" and not name.lower().endswith("_proxy")
    }


@dataclass
class Replay:
    """Build stages of one Dockerfile on this machine, in `rootfs` (the container's /)."""

    dockerfile: Dockerfile
    context: Path
    rootfs: Path
    build_args: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)  # ENV so far (inherited by FROM stage)
    workdir: str = "/"
    timings: list[StepTiming] = field(default_factory=list)
    skipped: list[Instruction] = field(default_factory=list)  # RUNs that administer the OS
    done: list[str | None] = field(default_factory=list)  # stages replayed
    cache: LayerCache | None = None  # RUNs with unchanged inputs are put back, not run
    key: str = ""  # what the layers so far were made from (Docker's build cache key)

    def __post_init__(self) -> None:
        shim = self.rootfs.parent / "base-image-bin"
        shim.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            link = shim / name
            if not link.exists():
                link.symlink_to(sys._base_executable)  # type: ignore[attr-defined]
        self.base_env = {
            "PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(self.rootfs / "root")),
            "LANG": "C.UTF-8",
        }
        # The build cache and network settings of this machine (a build passes these
        # as build args or a cache mount): pip's cache, index and proxies.
        for name, value in os.environ.items():
            if name.startswith("PIP_") or name.lower().endswith("_proxy"):
                self.base_env[name] = value

    def host_path(self, container_path: str) -> Path:
        return self.rootfs / container_path.lstrip("/")

    def _absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.workdir, path))

    def run_stage(self, name: str) -> None:
        """Replay `name` and the stages it is built on that were not replayed yet."""
        for stage in self.dockerfile.chain(name):
            if stage.name not in self.done:
                self._run(stage)
                self.done.append(stage.name)

    @property
    def outputs(self) -> list[Path]:
        """What a RUN may change: the rootfs and the folders absolute build args name."""
        return [self.rootfs, *(Path(v) for v in self.build_args.values() if os.path.isabs(v))]

    def _chain_key(self, *parts: object) -> None:
        self.key = hashlib.sha256(json.dumps([self.key, *parts], default=str).encode()).hexdigest()

    def _run(self, stage: Stage) -> None:
        args = dict(self.dockerfile.global_args) | self.build_args
        if stage.base not in self.dockerfile.stage_names:  # a fresh base image
            self.env, self.workdir, self.key = {}, "/", ""
            base = self.dockerfile.base_image(stage, self.build_args)
            self._chain_key("FROM", base, sys.version, sys._base_executable, self.outputs)  # type: ignore[attr-defined]
        scope: dict[str, str] = {}
        for insn in stage.instructions:
            values = {**self.base_env, **scope, **self.env}
            copied: list[str] = []
            if insn.name == "ARG":
                scope.update(resolve_args(insn.value, args))
            elif insn.name == "ENV":
                self.env.update(parse_env(insn.value, values))
            elif insn.name == "WORKDIR":
                self.workdir = self._absolute(substitute(insn.value.strip(), values))
                self.host_path(self.workdir).mkdir(parents=True, exist_ok=True)
            elif insn.name == "COPY":
                copied = [tree_digest(source) for source in self._copy(insn, values)]
            env = {**self.base_env, **scope, **self.env}
            self._chain_key(insn.name, insn.value, _made_from(env), self.workdir, copied)
            if insn.name == "RUN":
                self._shell(insn, env)

    def _copy(self, insn: Instruction, values: Mapping[str, str]) -> list[Path]:
        flags, rest = insn.split_flags()
        assert "from" not in flags, f"line {insn.line}: COPY --from in a replayed stage"
        *sources, dest = shlex.split(substitute(rest, values))
        target = self.host_path(self._absolute(dest))
        origins = []
        for source in sources:
            origin = self.context / source
            origins.append(origin)
            if not origin.exists():
                raise FileNotFoundError(
                    f"{self.dockerfile.path.name}:{insn.line}: COPY {source}: not in the "
                    "build context (missing, or left out by .dockerignore)"
                )
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
        return origins

    def _shell(self, insn: Instruction, env: dict[str, str]) -> None:
        command = insn.command
        if is_system_command(command):
            self.skipped.append(insn)
            return
        absolute = [w for w in shlex.split(command) if w.startswith("/")]
        assert not absolute, (
            f"{self.dockerfile.path.name}:{insn.line}: RUN names absolute paths {absolute}; "
            "a replay would touch this machine (use an ARG such as $VENV)"
        )
        family = f"{self.dockerfile.path.name}-L{insn.line}"
        started = time.monotonic()
        if self.cache and self.cache.restore(family, self.key, self.outputs):
            self.timings.append(StepTiming(insn.line, command, time.monotonic() - started, True))
            return
        done = subprocess.run(
            ["sh", "-c", command],
            cwd=self.host_path(self.workdir),
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        self.timings.append(StepTiming(insn.line, command, seconds))
        if done.returncode != 0:
            raise AssertionError(
                f"{self.dockerfile.path.name}:{insn.line}: RUN exited with {done.returncode}\n"
                f"$ {command}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        if self.cache and seconds >= self.cache.min_seconds:
            self.cache.keep(family, self.key, self.outputs)
