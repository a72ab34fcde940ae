"""Who a request comes from: the peer, or behind trusted proxies the right-most
X-Forwarded-For entry that is not one of them."""

from __future__ import annotations

import re

import pytest

from api.limits.client_address import TrustedProxies, parse_address, rate_key
from api.settings import Settings

PROXIES = TrustedProxies.from_entries(["10.0.0.0/8", "192.0.2.1", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # no proxy: the header is ignored
        ("10.1.2.3", [], "10.1.2.3"),  # a proxy that forwards nothing is the client
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # a client's own entry
        ("10.1.2.3", ["198.51.100.1, 10.9.9.9, 192.0.2.1"], "198.51.100.1"),  # proxy chain
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two headers, in order
        ("10.1.2.3", ["10.4.4.4, 192.0.2.1"], "10.4.4.4"),  # only proxies: the left-most
        ("10.1.2.3", ["unknown, 10.4.4.4"], "10.4.4.4"),  # garbage: the last proxy named
        ("10.1.2.3", ["198.51.100.1:4711"], "198.51.100.1"),
        ("fd00::1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
        ("testclient", ["198.51.100.1"], "testclient"),  # not an address: as it is
    ],
)
def test_the_client_is_the_right_most_untrusted_address(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    assert PROXIES.client_of(peer, forwarded_for) == client


def test_no_proxy_is_trusted_by_default() -> None:
    proxies = TrustedProxies.from_entries(Settings().trusted_proxies)
    assert proxies.client_of("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_an_ipv6_client_counts_as_its_slash_64() -> None:
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::9") == (
        "2001:db8:1:2::/64"
    )  # fmt: skip
    assert rate_key("198.51.100.1") == "198.51.100.1"
    assert parse_address("not an address") is None


def test_a_bad_trusted_proxy_entry_stops_the_start_naming_it() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/8' is not an address or CIDR")):
        Settings(trusted_proxies="10.0.0.0/8,10.0.0.1/8")
