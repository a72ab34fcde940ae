"""`GET /ui`: the dashboard page; `GET /ui/static/<name>`: its assets (api/dashboard).

No credential is needed: the files are the same for everyone and hold no data; the page
asks the API for everything with the credential its user types. Only files shipped in
the package are served, looked up by name in a table made at start (a name is never
joined to a folder, so `..` and its encodings lead nowhere). Every answer carries a
strict Content-Security-Policy: only this origin's scripts and styles, nothing inline,
no framing."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from api.dashboard import INDEX, STATIC_DIR

router = APIRouter(prefix="/ui", include_in_schema=False)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# connect-src 'self' covers ws:/wss: to this origin too (CSP 3); blob: images are
# previews of outputs fetched with the credential.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidated on each load: an upgraded server's page never runs yesterday's script.
    "Cache-Control": "no-cache",
}


def shipped_assets(folder: Path = STATIC_DIR) -> dict[str, Path]:
    """Every servable file under `folder`, by its '/'-separated name there."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


ASSETS = shipped_assets()


def _file(path: Path) -> FileResponse:
    return FileResponse(path, media_type=CONTENT_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.api_route("", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    return _file(ASSETS[INDEX])


@router.api_route("/", methods=["GET", "HEAD"])
async def index_with_slash(request: Request) -> RedirectResponse:
    # The page names its assets relative to `/ui`; from `/ui/` they would miss.
    target = request.scope.get("root_path", "") + "/ui"
    return RedirectResponse(target, status_code=308, headers=SECURITY_HEADERS)


@router.api_route("/static/{name:path}", methods=["GET", "HEAD"])
async def asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None or name == INDEX:
        return JSONResponse(
            {"detail": f"no dashboard asset {name!r}"}, status_code=404, headers=SECURITY_HEADERS
        )
    return _file(path)
