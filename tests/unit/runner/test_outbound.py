"""Which destinations callbacks and URL arguments may reach: literal addresses (no
network needed), names through an injected resolver, and `localhost` as resolved here."""

from __future__ import annotations

import ipaddress

import pytest

from runner.outbound import (
    ALLOWED_HINT,
    HTTP_SCHEMES,
    OutboundPolicy,
    Resolver,
    UnresolvedDestinationError,
    address_kind,
)

REMOTE = frozenset({"http", "https", "ftp", "sftp", "s3"})


def resolver_of(answers: dict[str, list[str]]) -> Resolver:
    """A resolver answering from `answers` only."""

    def resolve(host: str, port: int | None) -> list[str]:
        if host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    return resolve


def nowhere(host: str, port: int | None) -> list[str]:
    raise AssertionError(f"{host} should not have been resolved")


STRICT = OutboundPolicy(resolver=nowhere)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a link-local address (cloud metadata answers there)"),
        ("fe80::1", "a link-local address (cloud metadata answers there)"),
        ("febf::1", "a link-local address (cloud metadata answers there)"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.127.255.254", "a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved or special-purpose address"),
        ("255.255.255.255", "a reserved or special-purpose address"),
        ("192.0.2.10", "a reserved or special-purpose address"),  # documentation
        ("198.18.0.1", "a reserved or special-purpose address"),  # benchmarking
        ("0.1.2.3", "a reserved or special-purpose address"),  # "this network"
        ("2001:db8::1", "a reserved or special-purpose address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a reserved or special-purpose address"),
        ("fec0::1", "a site-local address"),
        ("::127.0.0.1", "a reserved or special-purpose address"),  # IPv4-compatible
    ],
)  # fmt: skip
def test_every_non_public_class_is_named(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind
    refusal = STRICT.url_refusal(f"http://{_in_url(address)}:8080/x", HTTP_SCHEMES)
    assert refusal == f"{address} is {kind}; {ALLOWED_HINT}"


@pytest.mark.parametrize(
    ("address", "inner", "kind"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "169.254.169.254", "a link-local address"),
        ("::ffff:10.1.2.3", "10.1.2.3", "a private address"),
        ("::ffff:100.64.0.1", "100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", "a link-local address"),  # NAT64
        ("2002:a00:1::1", "10.0.0.1", "a private address"),  # 6to4
    ],
)  # fmt: skip
def test_ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address(
    address: str, inner: str, kind: str
) -> None:
    refusal = STRICT.url_refusal(f"http://[{address}]/", HTTP_SCHEMES)
    assert refusal is not None
    assert refusal.startswith(f"{address} is an IPv6 form of {inner}, {kind}")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "64:ff9b::808:808"])  # fmt: skip
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) is None
    assert STRICT.url_refusal(f"https://{_in_url(address)}/data.csv", HTTP_SCHEMES) is None


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("2130706433", "2130706433 (127.0.0.1)"),
        ("0x7f.1", "0x7f.1 (127.0.0.1)"),
        ("0177.0.0.1", "0177.0.0.1 (127.0.0.1)"),
        ("127.1", "127.1 (127.0.0.1)"),
        ("0xa9fea9fe", "0xa9fea9fe (169.254.169.254)"),
    ],
)
def test_legacy_ipv4_spellings_are_read_as_resolvers_read_them(host: str, shown: str) -> None:
    refusal = STRICT.url_refusal(f"http://{host}/", HTTP_SCHEMES)
    assert refusal is not None and refusal.startswith(f"{shown} is a")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("localhost", "a loopback name"),
        ("LOCALHOST.", "a loopback name"),
        ("api.localhost", "a loopback name"),
        ("redis", "a single-label name"),
        ("kubernetes", "a single-label name"),
        ("redis.zyra.svc", "a cluster-internal name"),
        ("kubernetes.default.svc.cluster.local", "a cluster-internal name"),
        ("node-1.cluster.local", "a cluster-internal name"),
        ("printer.local", "a cluster-internal name"),
        ("metadata.google.internal", "a cluster-internal name"),
    ],
)
def test_internal_names_are_refused_without_resolving_them(host: str, kind: str) -> None:
    refusal = STRICT.url_refusal(f"http://{host}:6379/", HTTP_SCHEMES)
    assert refusal is not None
    assert refusal.startswith(f"{host.lower().rstrip('.')} is {kind}")
    assert refusal.endswith(ALLOWED_HINT)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    policy = OutboundPolicy(resolver=resolver_of({
        "public.example.org": ["93.184.216.34", "2606:2800:220:1::1"],
        "rebind.example.org": ["93.184.216.34", "10.0.0.7"],
        "meta.example.org": ["::ffff:169.254.169.254"],
    }))  # fmt: skip
    assert policy.url_refusal("https://public.example.org/a", HTTP_SCHEMES) is None
    assert policy.url_refusal("https://rebind.example.org/a", HTTP_SCHEMES) == (
        f"rebind.example.org resolves to 10.0.0.7, a private address; {ALLOWED_HINT}"
    )
    assert policy.url_refusal("http://meta.example.org/", HTTP_SCHEMES) == (
        "meta.example.org resolves to ::ffff:169.254.169.254, an IPv6 form of "
        f"169.254.169.254, a link-local address (cloud metadata answers there); {ALLOWED_HINT}"
    )
    destination = policy.check_url("https://public.example.org:8443/a", HTTP_SCHEMES)
    assert destination is not None and destination.port == 8443
    assert [str(a) for a in destination.addresses] == ["93.184.216.34", "2606:2800:220:1::1"]


def test_localhost_as_this_machine_resolves_it_is_refused() -> None:
    # The real resolver: `localhost` answers without any network.
    policy = OutboundPolicy.from_entries(["*.localhost"])
    assert policy.url_refusal("http://localhost/", HTTP_SCHEMES) == (
        f"localhost is a loopback name; {ALLOWED_HINT}"
    )
    allowed = OutboundPolicy.from_entries(["localhost"])
    destination = allowed.check_url("http://localhost:9/", HTTP_SCHEMES)
    assert destination is not None
    assert ipaddress.ip_address("127.0.0.1") in destination.addresses


def test_a_name_that_does_not_resolve_is_refused() -> None:
    policy = OutboundPolicy(resolver=resolver_of({}))
    with pytest.raises(
        UnresolvedDestinationError, match=r"nowhere\.example\.org cannot be resolved"
    ):
        policy.check_url("https://nowhere.example.org/", HTTP_SCHEMES)
    empty = OutboundPolicy(resolver=resolver_of({"empty.example.org": []}))
    assert empty.url_refusal("https://empty.example.org/", HTTP_SCHEMES) == (
        "empty.example.org resolves to no address"
    )


# --- the allow-list -----------------------------------------------------------------------


def test_the_allow_list_admits_hosts_suffixes_and_networks() -> None:
    resolve = resolver_of({
        "n8n.automation.svc.cluster.local": ["10.43.0.12"],
        "hooks.corp.example": ["10.8.1.1"],
        "a.b.corp.example": ["192.168.3.3"],
        "corp.example": ["10.8.1.2"],
        "pod.example.org": ["10.42.7.7"],
        "other.example.org": ["10.99.0.1"],
    })  # fmt: skip
    policy = OutboundPolicy.from_entries(
        ["n8n.automation.svc.cluster.local", "*.corp.example", "10.42.0.0/16", " 127.0.0.1 ",
         "fd00:42::/32", ""],
        resolver=resolve,
    )  # fmt: skip
    ok = [
        "http://n8n.automation.svc.cluster.local:5678/webhook/x",  # by host: any address
        "http://N8N.automation.svc.cluster.local./webhook/x",
        "https://hooks.corp.example/", "https://a.b.corp.example/",  # by suffix
        "http://10.42.200.1/", "http://pod.example.org/",  # by CIDR, literal or resolved
        "http://127.0.0.1:8080/", "http://[::ffff:127.0.0.1]/",  # mapped: the same host
        "http://[fd00:42::9]/",
    ]  # fmt: skip
    for url in ok:
        assert policy.url_refusal(url, HTTP_SCHEMES) is None, url
    refused = {
        "http://corp.example/": "corp.example resolves to 10.8.1.2, a private address",
        "http://other.example.org/": "other.example.org resolves to 10.99.0.1",
        "http://127.0.0.2/": "127.0.0.2 is a loopback address",
        "http://10.43.0.12/": "10.43.0.12 is a private address",  # the name, not its address
        "http://x.automation.svc.cluster.local/": "is a cluster-internal name",
        "http://localhost/": "localhost is a loopback name",  # a CIDR admits no name
        "http://[::1]/": "::1 is a loopback address",
        "http://[fd00:43::1]/": "is a private address",
    }
    for url, says in refused.items():
        refusal = policy.url_refusal(url, HTTP_SCHEMES)
        assert refusal is not None and says in refusal, (url, refusal)


@pytest.mark.parametrize("entry", ["*", "*.", "http://x.example/", "a b", "10.0.0.0/33",
                                   "127.1", "*.10.0.0.1"])  # fmt: skip
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="ZYRA_OUTBOUND_ALLOW entry"):
        OutboundPolicy.from_entries(["example.org", entry])


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "URL scheme 'file' is not accepted; use one of http, https"),
        ("gopher://8.8.8.8/", "URL scheme 'gopher' is not accepted"),
        ("http:///path-only", "names no host"),
        ("http:8.8.8.8/x", "names no host"),
        ("http://8.8.8.8:99999/", "has an invalid host or port"),
        ("http://8.8.8.8\\@10.0.0.1/", "may not contain backslashes"),
        ("http://10.0.0.1\\@8.8.8.8/", "may not contain backslashes"),
        ("http://8.8.8.8/a b", "may not contain backslashes, spaces or control characters"),
        ("http://8.8.8.8\t/", "may not contain backslashes, spaces or control characters"),
        ("http://u@8.8.8.8@10.0.0.1/", "more than one '@'"),
        ("http://%31%30.0.0.1/", "is not a valid host name"),
        ("http://exämple.org/", "is not an ASCII host name; give an internationalised name"),
        (
            "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth
            "is not an ASCII host name",
        ),
        ("not a url", "is not a URL"),
    ],
)
def test_urls_parsers_read_differently_are_refused(url: str, says: str) -> None:
    refusal = STRICT.url_refusal(url, HTTP_SCHEMES)
    assert refusal is not None and says in refusal


def test_userinfo_and_schemes_are_read_like_http_clients_read_them() -> None:
    assert STRICT.url_refusal("HTTP://user:pw@10.0.0.1/", HTTP_SCHEMES) == (
        f"10.0.0.1 is a private address; {ALLOWED_HINT}"
    )
    assert STRICT.url_refusal("http://10.0.0.1@8.8.8.8/", HTTP_SCHEMES) is None  # user 10.0.0.1
    assert STRICT.url_refusal("ftp://user@10.0.0.1/pub/x", REMOTE) is not None
    assert STRICT.url_refusal("sftp://[::1]/x", REMOTE) is not None


def test_s3_urls_name_a_bucket_not_a_host() -> None:
    # The connection goes to the endpoint the operator configured, whatever the bucket.
    assert STRICT.check_url("s3://10.0.0.1/key", REMOTE) is None
    assert STRICT.url_refusal("s3://localhost/key", REMOTE) is None
    assert STRICT.url_refusal("s3://bucket/key", HTTP_SCHEMES) is not None  # not for callbacks


def _in_url(address: str) -> str:
    return f"[{address}]" if ":" in address else address
