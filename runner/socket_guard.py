"""A last check inside the command's process: it connects only to allowed destinations.

The API checks every URL a request names before anything runs, but Zyra then connects
on its own: it follows redirects, pages through `Link` headers, reads URLs from
manifests and pages, and resolves names again, maybe to another address (DNS
rebinding). Installed in the command's process right before Zyra runs, this guard
holds every TCP or UDP connection made through Python's `socket` module to the same
policy (runner/outbound.py), whatever URL led there.

Local and cluster-internal names (`localhost`, `redis`, `*.svc`) are refused when
resolved. Names the operator vouched for (ZYRA_OUTBOUND_ALLOW hosts and `*.suffix` entries, and
`trusted_hosts` such as the S3 endpoint) are followed through `getaddrinfo`: the
addresses they resolve to are allowed from then on.

Not covered: C libraries that open their own sockets (libcurl inside GDAL or netCDF),
and code that undoes the patch (commands are Zyra, trusted code on hostile inputs).
The runner pods' NetworkPolicy is the boundary the kernel enforces.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from runner.outbound import (
    ALLOWED_HINT,
    IPAddress,
    OutboundPolicy,
    RefusedDestinationError,
    internal_name_kind,
    ip_literal,
    normalise_host,
)

_INET = (socket.AF_INET, socket.AF_INET6)


class OutboundGuard:
    """What the patched socket functions consult."""

    def __init__(self, policy: OutboundPolicy, trusted_hosts: Iterable[str] = ()) -> None:
        self.policy = policy
        self.trusted = frozenset(normalise_host(h) for h in trusted_hosts)
        self._vouched: set[IPAddress] = set()
        self._lock = threading.Lock()

    def trusts_name(self, host: str) -> bool:
        try:
            name = normalise_host(host)
        except RefusedDestinationError:
            return False
        return name in self.trusted or self.policy.allows_name(name)

    def name_refusal(self, host: Any) -> str | None:
        """Why resolving `host` is refused: a local or cluster-internal name."""
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str) or not host or self.trusts_name(host):
            return None
        try:
            name = normalise_host(host)
        except RefusedDestinationError as exc:
            return f"{host}: {exc}"
        kind = None if ip_literal(name) is not None else internal_name_kind(name)
        return f"{name} is {kind}; {ALLOWED_HINT}" if kind else None

    def note_resolved(self, host: Any, infos: list[tuple[Any, ...]]) -> None:
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not isinstance(host, str) or not self.trusts_name(host):
            return
        with self._lock:
            for info in infos:
                if info[0] in _INET:
                    self._vouched.add(_address(info[4][0]))

    def refusal(self, family: int, address: Any) -> str | None:
        """Why connecting (or sending) to `address` is refused, or None."""
        if family not in _INET or not isinstance(address, tuple) or not address:
            return None
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        try:
            ip = _address(host)
        except ValueError:
            # A name given to connect() itself: judged (and resolved) as a whole.
            if self.trusts_name(host):
                return None
            try:
                self.policy.destination(host)
            except RefusedDestinationError as exc:
                return str(exc)
            return None
        with self._lock:
            if ip in self._vouched:
                return None
        kind = self.policy.address_refusal(ip)
        return f"{ip} is {kind}; {ALLOWED_HINT}" if kind else None

    def check(self, family: int, address: Any) -> None:
        refusal = self.refusal(family, address)
        if refusal:
            raise PermissionError(errno.EACCES, f"outbound connection refused: {refusal}")


def install(policy: OutboundPolicy, trusted_hosts: Iterable[str] = ()) -> OutboundGuard:
    """Patch this process's `socket` module; for a process about to run a command."""
    guard = OutboundGuard(policy, trusted_hosts)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        refusal = guard.name_refusal(host)
        if refusal:
            raise socket.gaierror(socket.EAI_NONAME, f"name refused: {refusal}")
        infos = real_getaddrinfo(host, *args, **kwargs)
        guard.note_resolved(host, infos)
        return infos

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    cls = socket.socket
    cls.connect = _checked(guard, cls.connect, 0)  # type: ignore[method-assign]
    cls.connect_ex = _checked(guard, cls.connect_ex, 0)  # type: ignore[method-assign]
    cls.sendto = _checked(guard, cls.sendto, -1)  # type: ignore[method-assign]
    return guard


def _checked(guard: OutboundGuard, method: Callable[..., Any], at: int) -> Callable[..., Any]:
    """`method` checking its address argument (position `at` among the arguments) first."""

    def checked(self: socket.socket, *args: Any) -> Any:
        if args:
            guard.check(self.family, args[at])
        return method(self, *args)

    checked.__name__ = method.__name__
    return checked


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])
