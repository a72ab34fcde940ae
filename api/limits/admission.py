"""Which rate a request counts against, before its route runs.

- A refused credential first counts against its client address: after
  ZYRA_RATE_LIMIT_FAILED_AUTH_PER_IP of them in a window, every request from there is
  refused (429) until the window has passed, whatever it presents. This check comes
  before any credential is looked at, so guessing keys costs the guesser, not us.
- An authenticated request counts against its principal (`Principal.id`), wherever it
  comes from: many callers behind one proxy or NAT do not share a budget.
- Any other request (no credential, a refused one, the docs) counts against its
  client address.
- A sync run also counts against its principal's stricter sync-run rate (the route
  checks it: only the route knows the mode).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import Scope

from api.limits.client_address import TrustedProxies, rate_key
from api.limits.errors import LimitExceededError
from api.limits.rates import LimitName, Rate, RateLimiter, Verdict
from api.security.authentication import Authenticator, NotAuthenticatedError
from api.security.credentials import MalformedCredentialError, presented_credential
from api.security.principals import Principal
from api.settings import Settings
from runner.dependencies import DependencyUnavailableError

VERDICT_STATE = "rate_limit"  # conn.state attribute: the verdict whose headers the answer gets


class RequestLimits:
    def __init__(self, settings: Settings, rates: RateLimiter) -> None:
        window = settings.rate_limit_window_s
        self.per_principal = Rate(
            LimitName.PRINCIPAL_REQUESTS, settings.rate_limit_per_principal, window
        )
        self.sync_runs = Rate(
            LimitName.SYNC_RUNS, settings.rate_limit_sync_runs_per_principal, window
        )
        self.per_address = Rate(LimitName.ADDRESS_REQUESTS, settings.rate_limit_per_ip, window)
        self.failed_auth = Rate(
            LimitName.FAILED_AUTHENTICATIONS, settings.rate_limit_failed_auth_per_ip, window
        )
        self.proxies = TrustedProxies.from_entries(settings.trusted_proxies)
        self.rates = rates

    def locate_client(self, scope: Scope) -> None:
        """Put the client's address (and, from a trusted proxy, the scheme it was reached
        by) in the scope, where routes and the access log find it."""
        peer = scope.get("client")
        if not peer or not self.proxies.is_trusted_peer(peer[0]):
            return
        headers = Headers(scope=scope)
        scope["client"] = (self.proxies.client_of(peer[0], headers.getlist("x-forwarded-for")), 0)
        proto = headers.get("x-forwarded-proto", "").strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto.replace("http", "ws") if scope["type"] == "websocket" else proto

    async def admit(self, conn: HTTPConnection) -> Verdict | None:
        """The verdict of the rate that applies (None when that rate is off), or
        LimitExceededError; DependencyUnavailableError while Redis is down."""
        address = conn.client.host if conn.client else "unknown"
        key = rate_key(address)
        if self.failed_auth.on:
            failures = await self.rates.peek(self.failed_auth, key)
            if not failures.allowed:
                raise _locked_out(failures, address)
        principal, refused = await _identify(conn)
        if principal is not None:
            return await self._count(self.per_principal, principal.id, principal.id)
        if refused and self.failed_auth.on:
            failures = await self.rates.hit(self.failed_auth, key)
            if not failures.allowed:
                raise _locked_out(failures, address)
        return await self._count(self.per_address, key, address)

    async def admit_sync_run(self, conn: HTTPConnection, principal: Principal) -> None:
        """Count a sync run; its verdict replaces the request's for the headers, being
        the stricter limit that applies."""
        if self.sync_runs.on:
            verdict = await self._count(self.sync_runs, principal.id, principal.id)
            setattr(conn.state, VERDICT_STATE, verdict)

    async def _count(self, rate: Rate, key: str, who: str) -> Verdict | None:
        if not rate.on:
            return None
        verdict = await self.rates.hit(rate, key)
        if not verdict.allowed:
            raise LimitExceededError.over_rate(verdict, who)
        return verdict


async def _identify(conn: HTTPConnection) -> tuple[Principal | None, bool]:
    """The principal, or None and whether a credential was presented (and refused)."""
    authenticator: Authenticator = conn.app.state.authenticator
    try:
        return await authenticator.identify(conn), False
    except NotAuthenticatedError:
        try:
            return None, presented_credential(conn) is not None
        except MalformedCredentialError:
            return None, True
    except DependencyUnavailableError:  # the JWKS: the route's dependency answers 503
        return None, False


def _locked_out(failures: Verdict, address: str) -> LimitExceededError:
    detail = (
        f"too many failed authentications from {address} ({failures.rate.describe()}): "
        f"every request from there is refused for {failures.retry_after_s} s"
    )
    return LimitExceededError(failures.rate.name, detail, failures.retry_after_s, failures)


async def admit_sync_run(conn: HTTPConnection, principal: Principal) -> None:
    """For `POST /cli/run` with mode sync: LimitExceededError beyond the sync-run rate."""
    limits: RequestLimits | None = getattr(conn.app.state, "request_limits", None)
    if limits is not None:
        await limits.admit_sync_run(conn, principal)
