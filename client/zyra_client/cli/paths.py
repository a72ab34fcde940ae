"""Local files in a remote command: inputs are uploaded, outputs fetched back.

An input-path argument (`x-zyra.path == "input"`) naming a local file becomes
`file_id:<id>` of its upload. An output-path argument (`"output"`) is sent as its last
path component only (the command writes into its job's working directory); after a
successful run that output is downloaded to the path the user named. An output
argument whose name ends in `_dir` (`--output-dir`, `--sync-dir`) names a directory:
every output under it comes back. A pipeline (`run`) names its outputs inside its file,
not in arguments: every output it made comes back under the current folder, where a
local `zyra run` would have written it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from zyra_client.cli.command_parser import x_zyra
from zyra_client.models import CommandDescription, JobView

# Values that are not local paths: standard streams, uploads, URLs.
STDIO = "-"


class PathProblem(ValueError):
    """A path argument that cannot work remotely; `option` names the argument."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"argument {option}: {message}")
        self.option = option


@dataclass(frozen=True)
class Download:
    remote: str  # the name the command writes in its working directory
    local: Path  # where the user asked for it
    is_dir: bool


@dataclass
class Plan:
    """What to upload before the run and download after it."""

    args: dict[str, Any]
    uploads: dict[tuple[str, int], Path]  # (argument, index in its list) → local file
    downloads: list[Download]


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_reference(text: str) -> bool:
    return text == STDIO or text.startswith("file_id:") or "://" in text


def _local_input(option: str, text: str) -> Path | None:
    """The local file to upload for `text`, or None to pass it on as it is."""
    if _is_reference(text):
        return None
    path = Path(text).expanduser()
    if path.is_dir():
        raise PathProblem(option, f"{text} is a directory; give the files in it")
    if path.is_file():
        return path
    if path.is_absolute() or len(PurePosixPath(text).parts) == 1:
        # A path on the server (its allowed prefixes), or a name Zyra resolves itself
        # (a basemap's bare image name, a pkg: reference).
        return None
    raise PathProblem(option, f"no such file: {text}")


def plan(command: CommandDescription, args: dict[str, Any]) -> Plan:
    """Check every path argument (raising PathProblem) before anything is sent."""
    sent = dict(args)
    uploads: dict[tuple[str, int], Path] = {}
    downloads: list[Download] = []
    remote_names: dict[str, str] = {}
    for name, schema in command.arguments.items():
        if name not in args or not isinstance(args[name], str | list):
            continue
        x = x_zyra(schema)
        option = x.get("option") or name.upper()
        role = x.get("path")
        if role == "input":
            for index, value in enumerate(_values(args[name])):
                local = _local_input(option, str(value))
                if local is not None:
                    uploads[(name, index)] = local
        elif role == "output":
            mapped = []
            for value in _values(args[name]):
                text = str(value)
                if _is_reference(text):
                    mapped.append(text)
                    continue
                remote = PurePosixPath(text.replace("\\", "/").rstrip("/")).name
                if not remote or remote in ("..", "."):
                    raise PathProblem(option, f"{text} names no file")
                if remote_names.setdefault(remote, option) != option or remote in mapped:
                    raise PathProblem(option, f"another output is also named {remote!r}")
                mapped.append(remote)
                downloads.append(Download(remote, Path(text).expanduser(), name.endswith("_dir")))
            sent[name] = mapped if isinstance(args[name], list) else mapped[0]
    return Plan(sent, uploads, downloads)


def apply_uploads(plan: Plan, refs: dict[tuple[str, int], str]) -> dict[str, Any]:
    """The arguments with each uploaded file replaced by its `file_id:` reference."""
    args = dict(plan.args)
    for (name, index), ref in refs.items():
        if isinstance(args[name], list):
            args[name] = [*args[name][:index], ref, *args[name][index + 1 :]]
        else:
            args[name] = ref
    return args


def wanted_outputs(plan: Plan, view: JobView) -> list[tuple[str, Path]]:
    """(output name, local path) of every output the user named that the job made."""
    made = [output.name for output in view.outputs]
    found: list[tuple[str, Path]] = []
    for download in plan.downloads:
        if download.is_dir:
            prefix = download.remote + "/"
            found += [
                (name, download.local / name[len(prefix) :])
                for name in made
                if name.startswith(prefix)
            ]
        elif download.remote in made:
            found.append((download.remote, download.local))
    return found


def pipeline_outputs(view: JobView, here: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(output name, local path under `here`) of every output a pipeline made, and the
    names refused: one that would land outside `here` (absolute, or with `..`). A binary
    stdout kept as an output goes to stdout, as for any command, not here."""
    found: list[tuple[str, Path]] = []
    refused: list[str] = []
    for output in view.outputs:
        if output.source != "workdir":
            continue
        name = PurePosixPath(output.name)
        parts = name.parts
        if not parts or name.is_absolute() or ".." in parts or "\\" in output.name:
            refused.append(output.name)
        else:
            found.append((output.name, here.joinpath(*parts)))
    return found, refused
