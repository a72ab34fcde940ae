"""An n8n process (`n8n start`) on a free loopback port, with state of its own.

n8n is installed by tools/n8n/install-n8n.sh (cached), or taken from N8N_BIN.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.services import free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "tools" / "n8n" / "install-n8n.sh"
READY = "Editor is now accessible via"


def n8n_binary() -> Path:
    """N8N_BIN from the environment, or the cached install (installing it on first use)."""
    given = os.environ.get("N8N_BIN")
    if given:
        return Path(given)
    done = subprocess.run(
        [str(INSTALLER)], check=True, capture_output=True, text=True, timeout=1800
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("N8N_BIN="), done.stdout + done.stderr
    return Path(last.removeprefix("N8N_BIN="))


def headless_env(folder: Path, port: int, **extra: str) -> dict[str, str]:
    """n8n's environment: its own state folder, loopback only, nothing phoned home."""
    url = f"http://127.0.0.1:{port}/"
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),  # npm/n8n write nothing into the real home
        "N8N_USER_FOLDER": str(folder),
        "N8N_PORT": str(port),
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_HOST": "127.0.0.1",
        "N8N_PROTOCOL": "http",
        # $execution.resumeUrl and the webhook URLs n8n reports are built from it.
        "WEBHOOK_URL": url,
        "N8N_EDITOR_BASE_URL": url,
        "N8N_ENCRYPTION_KEY": "zyra-n8n-tests-encryption-key",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "true",
        "N8N_SECURE_COOKIE": "false",  # plain http on loopback
        # No telemetry, update checks, banners, templates or onboarding.
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_WHATS_NEW_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_HIRING_BANNER_ENABLED": "false",
        "N8N_DYNAMIC_BANNERS_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
        "N8N_LICENSE_AUTO_RENEW_ENABLED": "false",
        "N8N_AI_ENABLED": "false",
        "N8N_DISABLE_UI": "true",
        # The example workflows read the service's URL from $env.ZYRA_URL and verify
        # callback signatures with the Code node's `crypto`.
        "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
        "NODE_FUNCTION_ALLOW_BUILTIN": "crypto",
        # Code nodes run in a task-runner child process, as n8n 2.x does by default. Its
        # broker listens on a port of its own (n8n's default, 5679, is one per machine).
        "N8N_RUNNERS_ENABLED": "true",
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),
        "N8N_GIT_NODE_DISABLE_BARE_REPOS": "true",  # silences a deprecation warning
        "DB_SQLITE_POOL_SIZE": "2",
        "GENERIC_TIMEZONE": "UTC",
        "N8N_LOG_LEVEL": "info",
        "N8N_LOG_OUTPUT": "console",
        "N8N_GRACEFUL_SHUTDOWN_TIMEOUT": "5",
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "all",
        "EXECUTIONS_DATA_SAVE_ON_ERROR": "all",
        **extra,
    }


class N8nServer:
    """`n8n start` in a process group of its own; `stop` ends the whole group."""

    def __init__(self, binary: Path, folder: Path, **env: str) -> None:
        self.binary, self.folder = binary, folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = headless_env(folder, self.port, **env)
        self.log_path = folder / "n8n.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0
        self.peak_rss_kib = (0, 0)  # (main process, process group), set by stop()

    def cli(self, *args: str, timeout: float = 120) -> str:
        """An n8n CLI command on the same state folder (while n8n runs or not)."""
        done = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"n8n {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}\n{done.stderr}")  # fmt: skip
        return done.stdout

    def start(self, timeout: float = 180) -> None:
        """Starts n8n; again after `stop`, on the same port and state (a restart)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # A restart appends to the log: only what this start writes counts as READY.
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "start"], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = started + timeout
        # /healthz answers as soon as the port is open, before the REST API and the
        # webhooks are mounted; the start command logs READY once all of it is (and the
        # active workflows are activated).
        up = wait_ready(f"{self.url}/healthz", self.process, self.log, timeout)
        while up and READY.encode() not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                up = False
            time.sleep(0.1)
        if not up:
            log = self.log()
            self.stop()
            raise RuntimeError(f"n8n not ready in {timeout}s:\n{log}")
        self.startup_s = time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss(self) -> tuple[int, int]:
        """Peak resident memory in KiB (VmHWM) of n8n's main process, and summed over its
        process group (the task runner too: an upper bound of their joint peak)."""
        assert self.process is not None
        main = group = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
                if int(stat.read_text().rpartition(")")[2].split()[2]) != self.process.pid:
                    continue
                status = (stat.parent / "status").read_text()
                hwm = next(int(line.split()[1]) for line in status.splitlines()
                           if line.startswith("VmHWM:"))  # fmt: skip
                group += hwm
                if stat.parent.name == str(self.process.pid):
                    main = hwm
        return main, group

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a grace period: nothing is left."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.peak_rss_kib = self.peak_rss()
        self.process = None
        group = process.pid  # start_new_session: its pid is the group's id
        _signal_group(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        _signal_group(group, signal.SIGKILL)  # whatever it started and left behind
        process.wait(timeout=10)


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
