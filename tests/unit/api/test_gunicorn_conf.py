"""api/gunicorn_conf.py: what Gunicorn reads from it under a given environment."""

from __future__ import annotations

import importlib
import logging
import os
import runpy
import warnings
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.workers.base import Worker

import api

CONF = Path(api.__file__).parent / "gunicorn_conf.py"
ONE_WORKER = "runs a single worker"


def load(monkeypatch: pytest.MonkeyPatch, cpus: int = 2, **env: str) -> dict[str, Any]:
    """The config module's names, executed afresh under exactly `env`."""
    for name in list(os.environ):
        if name.startswith(("ZYRA_", "GUNICORN_")) or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    return runpy.run_path(str(CONF))


class FakeArbiter:
    """What the hooks touch of Gunicorn's Arbiter: its logger and worker count (whose
    setter calls the `nworkers_changed` hook, as the real one does)."""

    def __init__(self, conf: dict[str, Any], workers: int) -> None:
        self.conf = conf
        self.log = logging.getLogger("test.gunicorn")
        self._workers: int | None = None
        self.num_workers = workers

    @property
    def num_workers(self) -> int:
        assert self._workers is not None
        return self._workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        old, self._workers = self._workers, value
        self.conf["nworkers_changed"](self, value, old)


def test_defaults_for_the_embedded_local_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load(monkeypatch)
    assert conf["bind"] == "0.0.0.0:8000"
    assert conf["workers"] == 1
    assert conf["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert (conf["timeout"], conf["graceful_timeout"], conf["keepalive"]) == (120, 30, 5)
    assert (conf["accesslog"], conf["errorlog"]) == ("-", "-")  # stdout, stderr
    assert conf["preload_app"] is False
    assert conf["control_socket_disable"] is True


def test_every_setting_is_one_gunicorn_knows_and_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gunicorn silently ignores names it does not know: a misspelt one would be lost."""
    conf = load(monkeypatch, ZYRA_BACKEND="kubernetes", ZYRA_GUNICORN_WORKERS="3")
    config = Config()
    expected = {
        "bind", "workers", "worker_class", "timeout", "graceful_timeout", "keepalive",
        "preload_app", "accesslog", "errorlog", "worker_tmp_dir", "control_socket_disable",
        "on_starting", "nworkers_changed", "forwarded_allow_ips",
    }  # fmt: skip
    assert expected <= set(config.settings)
    for name in expected:
        if conf[name] is not None:
            config.set(name, conf[name])  # runs Gunicorn's own validator
    assert config.address == [("0.0.0.0", 8000)]
    assert config.workers == 3
    # No proxy trusted by the server: ZYRA_TRUSTED_PROXIES alone decides (api/limits).
    assert config.forwarded_allow_ips == []


def test_the_worker_class_is_an_importable_gunicorn_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module_name, _, class_name = load(monkeypatch)["worker_class"].rpartition(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # not the deprecated uvicorn.workers
        worker = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(worker, Worker)


@pytest.mark.parametrize(
    ("cpus", "expected"), [(1, 3), (2, 4), (16, 4)], ids=["1cpu", "2cpus", "16cpus"]
)
def test_kubernetes_default_workers_are_2_per_cpu_plus_1_at_most_4(
    monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    assert load(monkeypatch, cpus=cpus, ZYRA_BACKEND="kubernetes")["workers"] == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ZYRA_GUNICORN_WORKERS": "6"}, 6),
        ({"WEB_CONCURRENCY": "5"}, 5),
        ({"ZYRA_GUNICORN_WORKERS": "2", "WEB_CONCURRENCY": "5"}, 2),
        ({"ZYRA_GUNICORN_WORKERS": " ", "WEB_CONCURRENCY": "5"}, 5),
    ],
    ids=["zyra-variable", "web-concurrency", "zyra-variable-wins", "blank-is-unset"],
)
def test_kubernetes_workers_as_asked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int
) -> None:
    assert load(monkeypatch, ZYRA_BACKEND="kubernetes", **env)["workers"] == expected


@pytest.mark.parametrize("backend", [None, "local"], ids=["unset", "local"])
def test_local_backend_forces_one_worker_and_says_why_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str | None
) -> None:
    env = {"ZYRA_GUNICORN_WORKERS": "3"} | ({"ZYRA_BACKEND": backend} if backend else {})
    conf = load(monkeypatch, **env)
    assert conf["workers"] == 1
    arbiter = FakeArbiter(conf, conf["workers"])
    with caplog.at_level(logging.INFO, logger="test.gunicorn"):
        conf["on_starting"](arbiter)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(
        "ZYRA_GUNICORN_WORKERS=3 ignored: ZYRA_BACKEND=local runs a single worker, because "
        "each worker would requeue and start the async jobs other workers queued (double runs)"
    )
    assert "several workers need ZYRA_BACKEND=kubernetes" in warning.getMessage()
    assert "ZYRA_BACKEND=local: 1 worker(s)" in caplog.text


def test_local_backend_default_says_nothing_alarming(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conf = load(monkeypatch, cpus=8)
    with caplog.at_level(logging.INFO, logger="test.gunicorn"):
        conf["on_starting"](FakeArbiter(conf, conf["workers"]))
    assert [r.getMessage() for r in caplog.records] == ["ZYRA_BACKEND=local: 1 worker(s)"]


def test_local_backend_stays_at_one_worker_when_the_command_line_or_ttin_asks_more(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    conf = load(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="test.gunicorn"):
        arbiter = FakeArbiter(conf, 4)  # `gunicorn -w 4`: the Arbiter sets it at setup
        assert arbiter.num_workers == 1
        arbiter.num_workers += 1  # SIGTTIN
        assert arbiter.num_workers == 1
        arbiter.num_workers = 0  # stopping (SIGWINCH) is left alone
        assert arbiter.num_workers == 0
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "workers=4 ignored",
        "workers=2 ignored",
    ]


def test_kubernetes_backend_lets_the_worker_count_change(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load(monkeypatch, ZYRA_BACKEND="kubernetes")
    arbiter = FakeArbiter(conf, 4)
    arbiter.num_workers += 1
    assert arbiter.num_workers == 5


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "0.0.0.0:8000"),
        ({"ZYRA_HOST": "127.0.0.1", "ZYRA_PORT": "9000"}, "127.0.0.1:9000"),
        ({"ZYRA_HOST": "::"}, "[::]:8000"),
        ({"ZYRA_HOST": "[::1]", "ZYRA_PORT": "8080"}, "[::1]:8080"),
    ],
    ids=["default", "host-and-port", "ipv6", "ipv6-bracketed"],
)
def test_bind_address(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    assert load(monkeypatch, **env)["bind"] == expected


def test_timeouts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load(
        monkeypatch,
        ZYRA_GUNICORN_TIMEOUT_S="0",
        ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S="45",
        ZYRA_GUNICORN_KEEPALIVE_S="75",
    )
    assert (conf["timeout"], conf["graceful_timeout"], conf["keepalive"]) == (0, 45, 75)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ZYRA_GUNICORN_WORKERS", "lots", "ZYRA_GUNICORN_WORKERS='lots' is not a whole number"),
        ("ZYRA_GUNICORN_WORKERS", "0", "ZYRA_GUNICORN_WORKERS='0' must be at least 1"),
        ("WEB_CONCURRENCY", "2.5", "WEB_CONCURRENCY='2.5' is not a whole number"),
        ("ZYRA_GUNICORN_TIMEOUT_S", "1.5", "ZYRA_GUNICORN_TIMEOUT_S='1.5' is not a whole number"),
        ("ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S", "-1", "ZYRA_GUNICORN_GRACEFUL_TIMEOUT_S='-1' must"),
        ("ZYRA_GUNICORN_KEEPALIVE_S", "ten", "ZYRA_GUNICORN_KEEPALIVE_S='ten' is not"),
        ("ZYRA_PORT", "http", "ZYRA_PORT='http' is not a whole number"),
        ("ZYRA_PORT", "70000", "ZYRA_PORT=70000 is not a port"),
    ],
)
def test_an_invalid_number_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    # Invalid even where the value would not be used (local backend, one worker).
    with pytest.raises(ValueError) as raised:
        load(monkeypatch, **{name: value})
    assert str(raised.value).startswith(message)
