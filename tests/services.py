"""Real services the tests start on free loopback ports: Redis and MinIO."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Callable[[], str], timeout: float
) -> bool:
    """Wait until GET `url` answers 200; False after `timeout`. A process that exits
    first raises with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return True
        except OSError:  # refused, reset, or an HTTP error status (503 while starting)
            pass
        time.sleep(0.2)
    return False


class RedisServer:
    """redis-server with AOF persistence, so a restart keeps what it had (but not its
    ACL users: like any Redis without an ACL file). With `password`, the default
    user needs it, as in production."""

    def __init__(self, folder: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.folder), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                    conn.sendall(auth + b"PING\r\n")
                    reply, replies = b"", 2 if auth else 1
                    while reply.count(b"\r\n") < replies and (chunk := conn.recv(64)):
                        reply += chunk
                    if reply.endswith(b"+PONG\r\n"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis flushes its AOF and exits
            self.process.wait(timeout=20)
            self.process = None


REPO = Path(__file__).resolve().parent.parent


def tool_binary(script: str, override_env: str | None = None) -> str:
    """A tool that `tools/<script>` builds or fetches into its cache (instant when
    cached); the script's last line is `name=PATH`. `override_env` may name one."""
    explicit = os.environ.get(override_env) if override_env else None
    if explicit:
        return explicit
    built = subprocess.run(["bash", str(REPO / "tools" / script)],
                           capture_output=True, text=True, check=True, timeout=1800)  # fmt: skip
    return built.stdout.strip().splitlines()[-1].split("=", 1)[1]


def minio_binary() -> str:
    """The MinIO server built from the Go module proxy (cached by version)."""
    return tool_binary("minio/build-minio.sh", "ZYRA_MINIO_BIN")


class S3Server:
    """A real MinIO server on free loopback ports."""

    access_key = "zyra-test-admin"
    secret_key = "zyra-test-secret-key"

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.console_port = folder, free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key,
               "MINIO_ROOT_PASSWORD": self.secret_key, "MINIO_BROWSER": "off",
               "MINIO_UPDATE": "off"}  # fmt: skip
        self.process = subprocess.Popen(
            [minio_binary(), "server", str(self.folder / "data"), "--quiet",
             "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{self.console_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"MinIO exited with {self.process.returncode} at start-up")
            try:
                if urllib.request.urlopen(f"{self.url}/minio/health/live", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("MinIO did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def credentials(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1"}  # fmt: skip

    def api_env(self, bucket: str) -> dict[str, str]:
        return {"ZYRA_STORAGE": "s3", "ZYRA_S3_BUCKET": bucket,
                "ZYRA_S3_ENDPOINT_URL": self.url, **self.credentials()}  # fmt: skip
