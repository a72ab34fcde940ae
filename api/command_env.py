"""The environment a command (and the template process) starts with.

Nothing of the API's own environment reaches a command unless it is listed in
`ZYRA_RUN_ENV_PASSTHROUGH`: no API keys, no Redis or S3 credentials.
"""

from __future__ import annotations

import os
from pathlib import Path

import runner
from api.settings import Settings


def command_environment(settings: Settings) -> dict[str, str]:
    home = settings.data_dir / "home"
    (home / ".config" / "matplotlib").mkdir(parents=True, exist_ok=True)
    env = {name: os.environ[name] for name in settings.run_env_passthrough if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            "HOME": str(home),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
            "PYTHONUNBUFFERED": "1",
            # Zyra's `run` loads a .env found above its working directory; nothing should
            # reach a command's environment that the service did not put there.
            "PYTHON_DOTENV_DISABLED": "1",
            # The template process imports `runner` from wherever this code lives.
            "PYTHONPATH": str(Path(runner.__file__).resolve().parent.parent),
        }
    )
    return env
