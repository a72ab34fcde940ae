"""Gunicorn settings of the production image, read from the environment at start.

    gunicorn -c python:api.gunicorn_conf 'api.server:create_app()'

`create_app()` reads its own `ZYRA_*` settings; this file reads:

- `ZYRA_HOST` (default `0.0.0.0`), `ZYRA_PORT` (8000): the address to bind.
- `ZYRA_GUNICORN_WORKERS`, else `WEB_CONCURRENCY`; default 2 x CPUs + 1, at most 4.
- `ZYRA_GUNICORN_TIMEOUT_S` (120): a worker whose event loop is stuck this long is
  killed and replaced; 0 turns this off.
- `ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S` (30): on SIGTERM, how long in-flight requests
  (sync runs included) may finish before workers are killed. Give Kubernetes'
  `terminationGracePeriodSeconds` a few seconds more than this.
- `ZYRA_GUNICORN_KEEPALIVE_S` (5): idle keep-alive connections are closed after this.
- `ZYRA_LOG_FORMAT` (`text`): `json` writes Gunicorn's, uvicorn's and our lines as one
  JSON object each (api/observability/log_format.py).

With the local backend (`ZYRA_BACKEND` unset or `local`) there is one worker,
whatever is asked: each worker's start-up would requeue and start jobs another
worker queued (double runs), and `ZYRA_LOCAL_MAX_RUNNING` is per process. With
`ZYRA_BACKEND=kubernetes` (Redis job store, compare-and-set finalisation)
several workers share the work safely.

An invalid number stops the start with a message naming the variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from runner.log_format import log_format_from_env

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

MAX_DEFAULT_WORKERS = 4
MULTI_WORKER_BACKENDS = frozenset({"kubernetes"})


def int_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """The whole number in `env[name]`, or `default` when unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def default_workers(cpus: int) -> int:
    return min(2 * cpus + 1, MAX_DEFAULT_WORKERS)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def requested_workers(env: Mapping[str, str], cpus: int) -> tuple[int, str | None]:
    """How many workers the environment asks for, and the variable that asked."""
    for name in ("ZYRA_GUNICORN_WORKERS", "WEB_CONCURRENCY"):
        if env.get(name, "").strip():
            return int_env(env, name, 1, minimum=1), name
    return default_workers(cpus), None


def backend_of(env: Mapping[str, str]) -> str:
    return env.get("ZYRA_BACKEND", "").strip() or "local"


def one_worker_warning(backend: str, asked: int, source: str) -> str:
    return (
        f"{source}={asked} ignored: ZYRA_BACKEND={backend} runs a single worker, because "
        "each worker would requeue and start the async jobs other workers queued (double "
        "runs) and ZYRA_LOCAL_MAX_RUNNING counts per process; several workers need "
        "ZYRA_BACKEND=kubernetes"
    )


def bind_address(env: Mapping[str, str]) -> str:
    host = env.get("ZYRA_HOST", "").strip() or "0.0.0.0"
    port = int_env(env, "ZYRA_PORT", 8000, minimum=1)
    if port > 65535:
        raise ValueError(f"ZYRA_PORT={port} is not a port (1-65535)")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"{host}:{port}"


_backend = backend_of(os.environ)
_asked, _asked_by = requested_workers(os.environ, usable_cpus())
_multi_worker = _backend in MULTI_WORKER_BACKENDS

bind = bind_address(os.environ)
workers = _asked if _multi_worker else 1
# The `uvicorn-worker` package: Uvicorn 0.30 deprecates its own `uvicorn.workers`.
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int_env(os.environ, "ZYRA_GUNICORN_TIMEOUT_S", 120, minimum=0)
graceful_timeout = int_env(os.environ, "ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S", 30, minimum=0)
keepalive = int_env(os.environ, "ZYRA_GUNICORN_KEEPALIVE_S", 5, minimum=0)
# No proxy trusted by the server itself: the client's address comes from
# ZYRA_TRUSTED_PROXIES alone (api/limits), whatever FORWARDED_ALLOW_IPS says.
forwarded_allow_ips = ""
# Each worker builds its own services (template process, backend watchers) in the
# app's lifespan; nothing is worth sharing from a preloaded app.
preload_app = False
accesslog = "-"  # stdout
errorlog = "-"  # stderr
# Heartbeat files in memory: not on a container's overlay disk, and writable under
# a read-only root filesystem.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
# No `gunicornc` control socket (Gunicorn 25.1+): it would be created under $HOME,
# read-only in a locked-down pod and shared by every Gunicorn of a user on a machine.
control_socket_disable = True
_log_format = log_format_from_env(os.environ)
if _log_format == "json":
    logger_class = "api.observability.gunicorn_logger.JsonLogger"

APP_LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def on_starting(server: Arbiter) -> None:
    """In the master, before any worker: the master's environment holds the keys too,
    so it is not dumpable either (runner/sandbox.py); the app's own loggers (`zyra.*`)
    log INFO to stderr, as under `python -m api`; workers inherit both."""
    from runner.sandbox import make_non_dumpable

    make_non_dumpable()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format=APP_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S %z"
        )
    _redact_credentials()
    _json_lines()
    if _asked > 1 and not _multi_worker and _asked_by is not None:
        server.log.warning(one_worker_warning(_backend, _asked, _asked_by))
    server.log.info("ZYRA_BACKEND=%s: %d worker(s)", _backend, server.num_workers)


def when_ready(server: Arbiter) -> None:
    """In the master, listening, before the first worker: every worker inherits
    PROMETHEUS_MULTIPROC_DIR, a fresh private folder where each writes its metrics and
    from which GET /metrics adds them up (api/observability/multiprocess.py)."""
    from api.observability.multiprocess import make_private_dir

    server.log.info("metrics of every worker are gathered in %s", make_private_dir())


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A worker is gone: its gauges (streams open, slots in use) no longer count."""
    from api.observability.multiprocess import mark_dead

    mark_dead(worker.pid)


def on_exit(server: Arbiter) -> None:
    from api.observability.multiprocess import remove_dir

    remove_dir()


def post_worker_init(worker: Worker) -> None:
    """The Uvicorn worker has given uvicorn's loggers Gunicorn's handlers by now."""
    _redact_credentials()
    _json_lines()


def _json_lines() -> None:
    """ZYRA_LOG_FORMAT=json: every handler Gunicorn and basicConfig made writes JSON."""
    if _log_format == "json":
        from api.observability.log_format import use_json_everywhere

        use_json_everywhere()


def _redact_credentials() -> None:
    """No `?api_key=` value in the access log (uvicorn's, written through Gunicorn's
    handlers) nor in any other line (api/security/log_redaction.py)."""
    from api.security.log_redaction import install_log_redaction

    install_log_redaction()


def nworkers_changed(server: Arbiter, new_value: int, old_value: int | None) -> None:
    """Keep the local backend at one worker when `-w`, GUNICORN_CMD_ARGS or a TTIN
    signal asks for more."""
    if new_value > 1 and not _multi_worker:
        server.log.warning(one_worker_warning(_backend, new_value, "workers"))
        server.num_workers = 1
