"""One pod's first container, run as a local process group: the node agent's "runtime"."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.utils import parse_quantity

if TYPE_CHECKING:
    from tests.k8s.node_agent import NodeAgent

log = logging.getLogger(__name__)

Pod = dict[str, Any]
SMP = "application/strategic-merge-patch+json"
LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$", re.DOTALL)


PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants (what a container's cgroup
    would count: the runner forks its command into a session of its own)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])  # field 4 of stat: the parent
            rss[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_nano() -> str:
    ns = time.time_ns()
    stamp = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


def raw_json(response: Any) -> Any:
    """Body of a `_preload_content=False` call: raw dicts sidestep client model quirks."""
    return json.loads(response.data)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown references stay as they are."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


class ConfigError(Exception):
    """The container cannot start yet (kubelet's CreateContainerConfigError)."""


class Container:
    """One pod's first container: a local process group, its log file and its state."""

    def __init__(self, agent: NodeAgent, pod: Pod) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        self.agent, self.pod = agent, pod
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.spec: dict[str, Any] = spec["containers"][0]
        self.folder = agent.folder / "pods" / f"{self.namespace}_{self.name}_{self.uid}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / f"{self.spec['name']}.log"
        self.container_id = f"zyra://{uuid.uuid4().hex}"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = self.finished_at = ""
        self.waiting = "ContainerCreating"  # last waiting reason, for the log endpoint
        self.deletion = threading.Event()  # API server set deletionTimestamp, or pod is gone
        self.gone = False  # pod object no longer exists: nothing left to report
        self.done = threading.Event()  # process exited and its output is fully in the log
        self._write_lock = threading.Lock()
        self._kill_lock = threading.Lock()
        self.oom_killed = False

    # ------------------------------------------------------------------ status
    def _status(self, phase: str, state: dict[str, Any], ready: bool, **extra: Any) -> None:
        spec = self.spec
        status = {
            "name": spec["name"], "image": spec.get("image", ""), "imageID": "",
            "ready": ready, "restartCount": 0, "started": "running" in state, "state": state,
        }  # fmt: skip
        if "waiting" in state:
            self.waiting = state["waiting"]["reason"]
        else:
            status["containerID"] = self.container_id
        reason = None
        if not ready:
            reason = "PodCompleted" if "terminated" in state else "ContainersNotReady"
        conditions = [
            {"type": t, "status": str(ready), "lastTransitionTime": now(), "reason": reason}
            for t in ("Ready", "ContainersReady")
        ]
        conditions.append({"type": "Initialized", "status": "True", "lastTransitionTime": now()})
        body = {"status": {
            "phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.pod["status"].get("startTime") or now(),
            "conditions": conditions, "containerStatuses": [status], **extra,
        }}  # fmt: skip
        self.agent.core.patch_namespaced_pod_status(
            self.name, self.namespace, body, _content_type=SMP, _preload_content=False
        )

    def _report_terminated(self, exit_code: int, reason: str, message: str = "") -> None:
        term: dict[str, Any] = {"exitCode": exit_code, "reason": reason,
                                "startedAt": self.started_at or now(),
                                "finishedAt": self.finished_at or now(),
                                "containerID": self.container_id}  # fmt: skip
        if message:
            term["message"] = message
        phase = "Succeeded" if exit_code == 0 else "Failed"
        self._status(phase, {"terminated": term}, ready=False)

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        try:
            self._run()
        except client.ApiException as exc:
            if exc.status != 404:  # 404: the pod went away under us, nothing to report
                log.exception("pod %s/%s: API error", self.namespace, self.name)
        except Exception:
            log.exception("pod %s/%s: agent error", self.namespace, self.name)
        finally:
            self.done.set()
            self.agent.forget(self)

    def _wait_until_deleted(self, state: dict[str, Any], phase: str = "Pending") -> bool:
        """Hold a waiting state until deletion; False if the agent stops first."""
        self._status(phase, {"waiting": state}, ready=False)
        while not self.deletion.wait(0.2):
            if self.agent.stopping.is_set():
                return False
        return True

    def _run(self) -> None:
        image = self.spec.get("image", "")
        if self.agent.unpullable and self.agent.unpullable in image:
            msg = f'Back-off pulling image "{image}"'
            if self._wait_until_deleted({"reason": "ImagePullBackOff", "message": msg}):
                self._finish_deleted_without_start()
            return
        argv, env = self._config_with_retries()
        if argv is None:
            if self.deletion.is_set():
                self._finish_deleted_without_start()
            return
        cwd = self.spec.get("workingDir") or ""
        self.started_at = now()
        try:
            self.process = subprocess.Popen(
                argv, env=env, cwd=cwd if cwd and os.path.isdir(cwd) else self.folder,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: the pod is killed as a whole
            )  # fmt: skip
        except OSError as exc:
            # What a container runtime reports when the entrypoint cannot be executed.
            self.finished_at = now()
            self._report_terminated(128, "StartError", str(exc))
            self._delete_if_requested()
            return
        pumps = [
            threading.Thread(target=self._pump, args=(stream, name), daemon=True)
            for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for pump in pumps:
            pump.start()
        limit = (self.spec.get("resources") or {}).get("limits", {}).get("memory")
        if limit:
            threading.Thread(
                target=self._enforce_memory, args=(int(parse_quantity(limit)),), daemon=True
            ).start()
        self._status("Running", {"running": {"startedAt": self.started_at}}, ready=True)
        if self.deletion.is_set():  # deleted while we were starting
            self.kill()
        code = self.process.wait()
        self._kill_group(signal.SIGKILL)  # leftovers in the group die with the container
        for pump in pumps:
            pump.join()
        self.finished_at = now()
        self.done.set()
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, like runtimes
        if not self.gone:
            reason = "OOMKilled" if self.oom_killed else "Completed" if code == 0 else "Error"
            self._report_terminated(code, reason)
            self._delete_if_requested()

    def _enforce_memory(self, limit: int) -> None:
        """The kernel's cgroup OOM killer, roughly: SIGKILL once the resident memory of
        the container's processes passes its memory limit (the command dies with the
        runner: it is bound to it by PR_SET_PDEATHSIG)."""
        assert self.process is not None
        while self.process.poll() is None:
            if tree_rss(self.process.pid) > limit:
                self.oom_killed = True
                self._kill_group(signal.SIGKILL)
                return
            time.sleep(0.05)

    def _config_with_retries(self) -> tuple[list[str] | None, dict[str, str]]:
        # The kubelet retries config errors (e.g. a Secret not created yet, or the Node
        # authorizer's graph not yet knowing the pod) until the pod goes away.
        reported = ""
        while not (self.deletion.is_set() or self.agent.stopping.is_set()):
            try:
                return self._config()
            except ConfigError as exc:
                if str(exc) != reported:
                    reported = str(exc)
                    state = {"reason": "CreateContainerConfigError", "message": reported}
                    self._status("Pending", {"waiting": state}, ready=False)
                time.sleep(0.5)
        return None, {}

    def _config(self) -> tuple[list[str], dict[str, str]]:
        spec, meta = self.spec, self.pod["metadata"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.agent.control_plane.port),
        }
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, value in self._env_source(source).items():
                env[prefix + key] = value
        for var in spec.get("env") or []:
            if "valueFrom" in var:
                value = self._value_from(var["valueFrom"], meta)
                if value is None:
                    continue
                env[var["name"]] = value
            else:
                env[var["name"]] = expand(var.get("value", ""), env)
        command = [expand(a, env) for a in spec.get("command") or []]
        args = [expand(a, env) for a in spec.get("args") or []]
        if not command:
            raise ConfigError("the node agent runs no images: the container needs a command")
        return command + args, env

    def _read(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        core = self.agent.core
        try:
            if kind == "secret":
                raw = core.read_namespaced_secret(name, self.namespace, _preload_content=False)
                encoded = raw_json(raw).get("data") or {}
                return {k: base64.b64decode(v).decode() for k, v in encoded.items()}
            raw = core.read_namespaced_config_map(name, self.namespace, _preload_content=False)
            return dict(raw_json(raw).get("data") or {})
        except client.ApiException as exc:
            if optional and exc.status == 404:
                return None
            raise ConfigError(f'{kind} "{name}" not found') from exc

    def _env_source(self, source: dict[str, Any]) -> dict[str, str]:
        kind, ref = ("secret", source["secretRef"]) if "secretRef" in source else (
            "configmap", source["configMapRef"])  # fmt: skip
        return self._read(kind, ref["name"], bool(ref.get("optional"))) or {}

    def _value_from(self, source: dict[str, Any], meta: dict[str, Any]) -> str | None:
        for kind, field in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
            if field in source:
                ref = source[field]
                data = self._read(kind, ref["name"], bool(ref.get("optional")))
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
                return data[ref["key"]]
        path = source.get("fieldRef", {}).get("fieldPath", "")
        fields = {
            "metadata.name": self.name, "metadata.namespace": self.namespace,
            "metadata.uid": self.uid, "spec.nodeName": self.agent.name,
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1", "status.podIP": "127.0.0.1",
        }  # fmt: skip
        if path in fields:
            return fields[path]
        label = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if label:
            return (meta.get(label.group(1)) or {}).get(label.group(2), "")
        raise ConfigError(f"unsupported env source {source}")

    def _pump(self, stream: Any, name: str) -> None:
        # CRI log format: "<RFC3339Nano> <stream> <F|P> <text>", one record per line.
        with stream:
            for raw in iter(stream.readline, b""):
                text = raw.decode(errors="replace")
                tag, text = ("F", text[:-1]) if text.endswith("\n") else ("P", text)
                with self._write_lock, self.log_path.open("a") as out:
                    out.write(f"{now_nano()} {name} {tag} {text}\n")

    # ------------------------------------------------------------------ deletion
    def request_deletion(self, grace: int, gone: bool = False) -> None:
        """deletionTimestamp seen (or the pod vanished): SIGTERM now, SIGKILL after grace."""
        self.gone = self.gone or gone
        if self.deletion.is_set():
            return
        self.deletion.set()
        self.kill(grace)

    def kill(self, grace: float = 0) -> None:
        with self._kill_lock:
            if self.process is None or self.process.poll() is not None:
                return
            self._kill_group(signal.SIGTERM if grace > 0 else signal.SIGKILL)
        if grace > 0:
            timer = threading.Timer(grace, self._kill_group, args=(signal.SIGKILL,))
            timer.daemon = True
            timer.start()

    def _kill_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def _finish_deleted_without_start(self) -> None:
        if not self.gone:
            self._report_terminated(
                137, "ContainerStatusUnknown",
                "The container could not be located when the pod was terminated",
            )  # fmt: skip
            self._delete_if_requested()

    def _delete_if_requested(self) -> None:
        # As the kubelet does: once containers are stopped and status is terminal, finish the
        # graceful deletion with grace 0 (finalizers, e.g. the Job controller's, still apply).
        if self.deletion.is_set() and not self.gone:
            self.agent.deletenow(self.namespace, self.name, self.uid)

    # ------------------------------------------------------------------ logs
    def log_records(self, offset: int = 0) -> tuple[list[tuple[str, str]], int]:
        """(timestamp, text) records from byte `offset`, and the offset after the last one."""
        try:
            with self._write_lock, self.log_path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], offset
        records = []
        for line in data.decode(errors="replace").splitlines(keepends=True):
            match = LOG_LINE.match(line[:-1])
            if match:
                stamp, _, tag, text = match.groups()
                records.append((stamp, text + ("\n" if tag == "F" else "")))
        return records, offset + len(data)
