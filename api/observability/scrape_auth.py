"""Who may read `/metrics`: an admin principal, the scrape token, or anyone when the
operator opted in.

The metrics say how busy the service is, which commands run and how often callers hit
limits: not for every caller. The scrape token (ZYRA_METRICS_TOKEN) is a credential of
its own, so that Prometheus needs no API key (one that could also run and read jobs).
It is compared in constant time; a scrape that presents it passes the rate limits
uncounted (api/limits/middleware.py): otherwise the token, being no API key, would be
counted as a failed authentication and lock the scraper's address out.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from api.security.authentication import Authenticator
from api.security.principals import Scope

METRICS_PATH = "/metrics"


def presents_scrape_token(conn: HTTPConnection, token: SecretStr | None) -> bool:
    """`Authorization: Bearer <ZYRA_METRICS_TOKEN>`, compared in constant time."""
    if token is None:
        return False
    scheme, _, value = conn.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


def is_scrape(conn: HTTPConnection) -> bool:
    """A request for `/metrics` with the scrape token (for the rate limiter)."""
    settings = getattr(conn.app.state, "settings", None)
    return (
        conn.scope["path"] == METRICS_PATH
        and settings is not None
        and presents_scrape_token(conn, settings.metrics_token)
    )


async def allow_scrape(conn: HTTPConnection) -> None:
    """Return when `conn` may read the metrics; else 401 (no or a wrong credential)
    or 403 (a principal without the admin scope), as other routes answer."""
    settings = conn.app.state.settings
    if settings.metrics_public or presents_scrape_token(conn, settings.metrics_token):
        return
    authenticator: Authenticator = conn.app.state.authenticator
    principal = await authenticator.identify(conn)
    authenticator.require(principal, [Scope.ADMIN.value])
    conn.state.principal = principal
