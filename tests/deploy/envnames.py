"""Which environment variable names the service actually reads.

`Settings` ignores unknown `ZYRA_*` variables (extra="ignore"), so a misspelt name in a
deployment file fails silently; these checks catch it.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from api.settings import Settings

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "scripts" / "start-api.sh"


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The BaseModel inside `Model`, `Model | None`, …; None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _model_of(arg)
            if model is not None:
                return model
    return None


def _is_mapping(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(arg) for arg in typing.get_args(annotation))
    return origin is dict or annotation is dict


def is_settings_env(name: str) -> bool:
    """`ZYRA_<field>` or `ZYRA_<field>__<sub field>…` (env_nested_delimiter="__")."""
    prefix = Settings.model_config.get("env_prefix", "")
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    if not name.startswith(prefix):
        return False
    model: type[BaseModel] = Settings
    parts = name[len(prefix) :].lower().split(delimiter)
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return True
        if _is_mapping(field.annotation):
            return True  # e.g. ZYRA_K8S__REQUESTS__CPU: any key
        nested = _model_of(field.annotation)
        if nested is None:
            return False
        model = nested
    return False


def gunicorn_env() -> set[str]:
    """The ZYRA_* variables api/gunicorn_conf.py reads (the production server's own)."""
    source = (REPO / "api" / "gunicorn_conf.py").read_text()
    return set(re.findall(r'"(ZYRA_GUNICORN_[A-Z0-9_]+)"', source))


def start_script_env() -> set[str]:
    """The ZYRA_* variables scripts/start-api.sh itself reads (ZYRA_RELOAD, …)."""
    return set(re.findall(r"\$\{?(ZYRA_[A-Z0-9_]+)", START_SCRIPT.read_text()))


def is_known_env(name: str) -> bool:
    """Read by Settings, by the start script, or an AWS credential for boto3."""
    return is_settings_env(name) or name in start_script_env() or name.startswith("AWS_")
