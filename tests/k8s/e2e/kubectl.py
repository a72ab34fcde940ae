"""kubectl against the cluster the release runs in: the test cluster's own, or any
cluster given by ZYRA_E2E_KUBECONFIG (kind, ...). The same calls an operator types."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kubectl:
    binary: str
    kubeconfig: Path
    namespace: str

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """`kubectl -n <namespace> <args>`; its stdout. KubectlError (with stderr) on
        failure when `check`."""
        done = self.raw(*args, timeout=timeout)
        if check and done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}")  # fmt: skip
        return done.stdout

    def raw(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def argv(self, *args: str) -> list[str]:
        """The command line, for long-running kubectl processes (port-forward)."""
        return [self.binary, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args]

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))

    def pod_names(self, selector: str) -> list[str]:
        return [p["metadata"]["name"] for p in self.get("pods", "-l", selector)["items"]]

    def describe_all(self) -> str:
        """What an operator looks at when something went wrong: every resource and event
        of the namespace, every pod described, and every container's log (and the log
        of its previous run, if it restarted)."""
        parts = []
        for args in (("get", "all,events,configmaps,secrets", "-o", "wide"),
                     ("describe", "pods")):  # fmt: skip
            done = self.raw(*args)
            parts.append(f"$ kubectl -n {self.namespace} {' '.join(args)}\n"
                         f"{done.stdout}{done.stderr}")  # fmt: skip
        try:
            pods = self.get("pods")["items"]
        except (KubectlError, json.JSONDecodeError, subprocess.TimeoutExpired) as exc:
            return "\n".join([*parts, f"(no pod list: {exc})"])
        for pod in pods:
            name = pod["metadata"]["name"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            for container in pod["spec"]["containers"]:
                args = ["logs", name, "-c", container["name"], "--tail=300"]
                done = self.raw(*args)
                parts.append(f"$ kubectl -n {self.namespace} {' '.join(args)}\n"
                             f"{done.stdout}{done.stderr}")  # fmt: skip
                mine = [s for s in statuses if s["name"] == container["name"]]
                if mine and mine[0].get("restartCount"):
                    done = self.raw(*args, "--previous")
                    parts.append(f"$ kubectl -n {self.namespace} {' '.join(args)} --previous\n"
                                 f"{done.stdout}{done.stderr}")  # fmt: skip
        return "\n".join(parts)
