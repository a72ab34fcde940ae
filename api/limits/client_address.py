"""The client's address: the connection's peer, or, when that peer is a trusted proxy,
the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.

Right-most, because a client may send any `X-Forwarded-For` it likes: only the entries
our own proxies appended (the right end) can be believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from runner.outbound import parse_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_CLIENT_PREFIX = 64  # one client (a home, a VM) usually holds a whole /64


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
    `[2001:db8::1]:443`; IPv4-mapped IPv6 as IPv4. None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def rate_key(address: str) -> str:
    """What per-address limits count under: the address, or an IPv6 address's /64 (else
    one machine could rotate through its 2^64 addresses)."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed) if parsed is not None else address


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> TrustedProxies:
        return cls(parse_networks(entries))

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client_of(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """`peer`: the connection's; `forwarded_for`: the values of every X-Forwarded-For
        header, in order. Entries are read from the right while they are trusted proxies;
        an entry that is no address at all stops there, at the last proxy that wrote it."""
        client = parse_address(peer)
        if client is None or not self.trusts(client):
            return str(client) if client is not None else peer
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break
            client = address
            if not self.trusts(address):
                break
        return str(client)

    def is_trusted_peer(self, peer: str) -> bool:
        return self.trusts(parse_address(peer))
