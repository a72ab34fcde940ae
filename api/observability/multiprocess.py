"""Gunicorn's side of multiprocess metrics (api/gunicorn_conf.py calls these).

prometheus_client decides at import whether values live in this process or in files of
PROMETHEUS_MULTIPROC_DIR, so the master sets it before any worker imports the app. The
folder is a fresh private one for each master: files left by an earlier run would add
its counts to ours. A dead worker's gauges go with it (`mark_dead`); its counters and
histograms stay, so that totals never go backwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def make_private_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """A new empty folder (mode 0700) for this master's workers, in memory when
    /dev/shm is writable (mmapped files; sparse, so small), set in `env`."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="zyra-metrics-", dir=base)
    env[MULTIPROC_ENV] = folder
    # This process's own environment: if prometheus_client is imported already, its
    # values go to files from now on (it reads os.environ; another `env` is not ours).
    if env is os.environ and (values := sys.modules.get("prometheus_client.values")):
        values.ValueClass = values.get_value_class()
    return folder


def mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        multiprocess.mark_process_dead(pid, folder)


def remove_dir() -> None:
    folder = os.environ.get(MULTIPROC_ENV)
    if folder and os.path.basename(folder).startswith("zyra-metrics-"):
        shutil.rmtree(folder, ignore_errors=True)
