"""405 Method Not Allowed whose `Allow` names every method the path has.

Starlette answers from the first route whose path matched, so `PUT /jobs/{id}` said
`Allow: GET` although `DELETE /jobs/{id}` is a route of its own."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods some route takes on the path of `scope`: each is asked through the
    routes' own matching (FastAPI nests included routers there)."""
    probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", ""),
             "headers": [], "query_string": b""}  # fmt: skip
    return [
        method
        for method in METHODS
        if any(route.matches({**probe, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _method_not_allowed(request: Request, _: Exception) -> JSONResponse:
    allow = ", ".join(allowed_methods(request.app.router.routes, request.scope))
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers={"Allow": allow},
    )


def install_method_not_allowed_handler(app: FastAPI) -> None:
    # By status: it takes precedence over the handler of HTTPException in general.
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
