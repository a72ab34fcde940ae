"""Where the service may connect on a client's behalf: callbacks and URL arguments.

A client names URLs the API POSTs to (`callback_url`) or Zyra fetches from (`acquire
http URL`, `search api --url`, ...). Left alone, those could reach what only the
service can reach: cloud metadata at 169.254.169.254, Redis, the Kubernetes API, other
pods. A destination is allowed when it is a public address, or when the operator
listed it in ZYRA_OUTBOUND_ALLOW (host names, `*.suffix` patterns, CIDRs).

Names are judged twice: by the name itself (`localhost`, single-label names and
cluster-internal suffixes are refused, whatever they resolve to here: another pod may
resolve them through other search domains), then by every address it resolves to.
An allow-list host or suffix entry vouches for the name and whatever it resolves to;
a CIDR entry admits addresses. No module of `api` is imported here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (as text; IPv6 may carry a %scope)
Resolver = Callable[[str, int | None], list[str]]

ALLOWED_HINT = "allowed destinations: public addresses or ZYRA_OUTBOUND_ALLOW"
HTTP_SCHEMES = frozenset({"http", "https"})
# The host part of these URLs names a bucket, not a machine: the connection goes to
# the S3 endpoint the operator configured (or AWS), never to a host the client picks.
BUCKET_SCHEMES = frozenset({"s3"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "sftp": 22}

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_NAME = re.compile(r"^[a-z0-9_.-]+$")
_LEGACY_IPV4 = re.compile(r"^[0-9a-fx.]+$")  # 0x7f.1, 2130706433, 0177.0.0.1: inet_aton forms
# Names that only mean something inside the machine or the cluster.
_INTERNAL_SUFFIXES = (".svc", ".cluster.local", ".local", ".internal")
_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the last 32 bits are an IPv4 address


class RefusedDestinationError(ValueError):
    """A URL or host the service may not connect to; the message says why."""


class UnresolvedDestinationError(RefusedDestinationError):
    """A name that does not resolve (now): refused at request time, retried on delivery."""


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`; ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an address or CIDR ({exc})") from None
    return tuple(networks)


def system_resolver(host: str, port: int | None) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def address_kind(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is, or None for a public one."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        kind = address_kind(inner)
        return f"an IPv6 form of {inner}, {kind}" if kind else None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata answers there)"
    if any(ip in net for net in _PRIVATE):
        return "a private address"
    if ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved or special-purpose address"
    return None


def internal_name_kind(host: str) -> str | None:
    """Why a (normalised) host name is refused by its shape alone, or None."""
    if host == "localhost" or host.endswith(".localhost"):
        return "a loopback name"
    if "." not in host:
        return "a single-label name (search domains complete it inside the cluster)"
    if host.endswith(_INTERNAL_SUFFIXES):
        return "a cluster-internal name"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an address, including the legacy IPv4 forms resolvers accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def normalise_host(host: str) -> str:
    """Lower case, without brackets or one trailing dot; refuses what no resolver
    reads the same way everywhere (non-ASCII, '%', spaces...)."""
    text = host.strip("[]").lower()
    text = text[:-1] if text.endswith(".") else text
    if not text:
        raise RefusedDestinationError("names no host")
    if not text.isascii():
        raise RefusedDestinationError(
            f"{host!r} is not an ASCII host name; give an internationalised name in its "
            "ASCII (xn--) form"
        )
    if ip_literal(text) is None and not _HOST_NAME.match(text):
        raise RefusedDestinationError(f"{host!r} is not a valid host name")
    return text


@dataclass(frozen=True)
class Destination:
    """A host that passed the checks, and the addresses to connect to (only these)."""

    host: str
    port: int | None
    addresses: tuple[IPAddress, ...]
    is_literal: bool = False


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations are allowed besides public addresses (ZYRA_OUTBOUND_ALLOW)."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # ".example.org" for "*.example.org"
    networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False, repr=False)

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], resolver: Resolver = system_resolver
    ) -> OutboundPolicy:
        """Parse allow-list entries; raises ValueError naming a bad one."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry.startswith("*."):
                suffixes.append("." + _entry_host(entry[2:], raw))
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            hosts.add(_entry_host(entry, raw))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks), resolver)

    # --- names and addresses ------------------------------------------------------------

    def allows_name(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def address_refusal(self, ip: IPAddress) -> str | None:
        """Why a connection to `ip` is refused, or None."""
        inner = embedded_ipv4(ip)
        if any(a in net for net in self.networks for a in (ip, inner) if a is not None):
            return None
        return address_kind(ip)

    def destination(self, host: str, port: int | None = None) -> Destination:
        """The addresses `host` may be reached at; raises RefusedDestinationError."""
        name = normalise_host(host)
        literal = ip_literal(name)
        if literal is not None:
            kind = self.address_refusal(literal)
            if kind:
                shown = name if _is_standard_literal(name) else f"{name} ({_show(literal)})"
                raise RefusedDestinationError(f"{shown} is {kind}; {ALLOWED_HINT}")
            return Destination(name, port, (literal,), is_literal=True)
        vouched = self.allows_name(name)
        if not vouched and (kind := internal_name_kind(name)):
            raise RefusedDestinationError(f"{name} is {kind}; {ALLOWED_HINT}")
        addresses = self._resolve(name, port)
        if not vouched:
            for address in addresses:
                kind = self.address_refusal(address)
                if kind:
                    raise RefusedDestinationError(
                        f"{name} resolves to {_show(address)}, {kind}; {ALLOWED_HINT}"
                    )
        return Destination(name, port, addresses)

    def _resolve(self, name: str, port: int | None) -> tuple[IPAddress, ...]:
        try:
            texts = self.resolver(name, port)
            addresses = tuple(ipaddress.ip_address(t) for t in texts)
        except (OSError, UnicodeError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise UnresolvedDestinationError(f"{name} cannot be resolved ({why})") from None
        if not addresses:
            raise UnresolvedDestinationError(f"{name} resolves to no address")
        return addresses

    # --- URLs ---------------------------------------------------------------------------

    def check_url(self, url: str, schemes: Collection[str]) -> Destination | None:
        """The destination of `url`, checked; None when its scheme names no host (s3).
        Raises RefusedDestinationError saying why it is refused."""
        match = _URL_SCHEME.match(url)
        if match is None:
            raise RefusedDestinationError("is not a URL; expects scheme://host/...")
        scheme = match.group(1).lower()
        if scheme not in schemes:
            raise RefusedDestinationError(
                f"URL scheme {scheme!r} is not accepted; use one of {', '.join(sorted(schemes))}"
            )
        if scheme in BUCKET_SCHEMES:
            return None
        # URL parsers disagree on these (a backslash ends the host for some, not others).
        if any(c == "\\" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise RefusedDestinationError(
                "may not contain backslashes, spaces or control characters"
            )
        parts = urlsplit(url)
        if parts.netloc.count("@") > 1:
            raise RefusedDestinationError("may not contain more than one '@' before the host")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise RefusedDestinationError(f"has an invalid host or port: {exc}") from None
        if not host:
            raise RefusedDestinationError("names no host; expects scheme://host/...")
        return self.destination(host, port or DEFAULT_PORTS.get(scheme))

    def url_refusal(self, url: str, schemes: Collection[str]) -> str | None:
        """Why `url` is refused, or None."""
        try:
            self.check_url(url, schemes)
        except RefusedDestinationError as exc:
            return str(exc)
        return None


def _is_standard_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _show(ip: IPAddress) -> str:
    """`::ffff:10.0.0.1` rather than `::ffff:a00:1`."""
    mapped = getattr(ip, "ipv4_mapped", None)
    return f"::ffff:{mapped}" if mapped is not None else str(ip)


def _entry_host(text: str, raw: str) -> str:
    try:
        host = normalise_host(text)
    except RefusedDestinationError:
        host = ""
    if not host or ip_literal(host) is not None:
        raise ValueError(
            f"ZYRA_OUTBOUND_ALLOW entry {raw!r} is neither a host name, a '*.suffix' "
            "pattern nor an address or CIDR"
        )
    return host
