"""The dashboard's page and assets at /ui: served without a credential, with a strict
CSP, only the files shipped in the package; the API behind it still needs one."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from api.dashboard import STATIC_DIR
from api.routers.dashboard import ASSETS

NO_KEY = {"X-API-Key": ""}
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}


def assert_security_headers(headers: object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe" not in csp and "http" not in csp and "*" not in csp
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]
    assert headers["referrer-policy"] == "no-referrer"  # type: ignore[index]


def referenced_assets(app_client: TestClient) -> set[str]:
    """What the page loads: the index's links and scripts, and every module they import."""
    page = app_client.get("/ui", headers=NO_KEY).text
    found = set(re.findall(r'(?:src|href)="ui/static/([^"]+)"', page))
    pending = [name for name in found if name.endswith(".js")]
    while pending:
        source = app_client.get(f"/ui/static/{pending.pop()}", headers=NO_KEY).text
        for imported in re.findall(r'from "\./([^"]+)"', source):
            if imported not in found:
                found.add(imported)
                pending.append(imported)
    return found


def test_the_page_and_every_asset_it_loads_are_served_without_a_credential(
    app_client: TestClient,
) -> None:
    page = app_client.get("/ui", headers=NO_KEY)
    assert page.status_code == 200
    assert page.headers["content-type"] == CONTENT_TYPES["html"]
    assert '<script type="module" src="ui/static/app.js"></script>' in page.text
    assert_security_headers(page.headers)
    loaded = referenced_assets(app_client)
    assert {"app.js", "api.js", "stream.js", "schema-form.js", "dashboard.css"} <= loaded
    for name in loaded:
        answer = app_client.get(f"/ui/static/{name}", headers=NO_KEY)
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == CONTENT_TYPES[name.rsplit(".", 1)[1]], name
        assert answer.content == (STATIC_DIR / name).read_bytes()
        assert_security_headers(answer.headers)
    # Nothing shipped is left unused, and nothing used is missing from the package.
    assert loaded == set(ASSETS) - {"index.html"}


def test_head_answers_like_get(app_client: TestClient) -> None:
    for path in ("/ui", "/ui/static/app.js"):
        answer = app_client.head(path, headers=NO_KEY)
        assert answer.status_code == 200, path
        assert answer.content == b""
        assert_security_headers(answer.headers)


def test_ui_with_a_slash_redirects_to_the_page(app_client: TestClient) -> None:
    answer = app_client.get("/ui/", headers=NO_KEY, follow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["location"] == "/ui"


def test_the_page_runs_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)  # every script has a src
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handlers
    for name, path in ASSETS.items():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name only
        assert not re.search(r"https?://", text), f"{name} names another origin"
        if name.endswith(".js"):
            # The API's data (job args, stderr, metadata) is attacker-controlled: text only.
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                         "eval(", "new Function", "localStorage.", "api_key="):  # fmt: skip
                assert sink not in text, f"{name} uses {sink}"


def test_unknown_assets_are_404(app_client: TestClient) -> None:
    for name in ("nope.js", "app.js.map", "index.html", "static/app.js", "", "APP.JS"):
        answer = app_client.get(f"/ui/static/{name}", headers=NO_KEY)
        assert answer.status_code == 404, name
        assert answer.headers["content-type"] == "application/json"
        assert_security_headers(answer.headers)


# Each as a client may send it: raw `..`, encoded dots and slashes, backslashes, doubly
# encoded, absolute, and a file that exists in the package but is no asset.
TRAVERSALS = [
    b"/ui/static/../../settings.py",
    b"/ui/static/../__init__.py",
    b"/ui/static/..%2f..%2fsettings.py",
    b"/ui/static/%2e%2e/%2e%2e/settings.py",
    b"/ui/static/%2e%2e%2f%2e%2e%2fsettings.py",
    b"/ui/static/..%5c..%5csettings.py",
    b"/ui/static/..\\..\\settings.py",
    b"/ui/static/%252e%252e%252f%252e%252e%252fsettings.py",
    b"/ui/static//work/main/api/settings.py",
    b"/ui/static/%2fetc%2fpasswd",
    b"/ui/static/./app.js/../../../settings.py",
    b"/ui/static/app.js%00.py",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS, ids=lambda p: p.decode())
def test_paths_out_of_the_static_folder_are_refused(
    app_client: TestClient, raw_path: bytes
) -> None:
    status, body = asgi_get(app_client, raw_path)
    assert status == 404
    assert body.startswith(b'{"detail":"no dashboard asset ')  # the asset route refused it
    assert b"class Settings" not in body and b"root:" not in body and b"STATIC_DIR" not in body


def asgi_get(app_client: TestClient, raw_path: bytes) -> tuple[int, bytes]:
    """GET `raw_path` exactly as written: HTTP clients resolve `..` before sending, a
    hostile one need not (the app is called as uvicorn would, on the client's loop)."""

    async def call() -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "root_path": "",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": b"", "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }  # fmt: skip
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app_client.app(scope, receive, send)  # type: ignore[arg-type]
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], body

    assert app_client.portal is not None
    return app_client.portal.call(call)


def test_the_api_behind_the_page_still_needs_a_credential(app_client: TestClient) -> None:
    assert app_client.get("/ui", headers=NO_KEY).status_code == 200
    for method, path in [
        ("GET", "/jobs"),
        ("GET", "/cli/commands"),
        ("POST", "/cli/run"),
        ("POST", "/upload"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef/download"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef/events"),
        ("DELETE", "/jobs/0123456789abcdef0123456789abcdef"),
    ]:
        answer = app_client.request(method, path, headers=NO_KEY)
        assert answer.status_code == 401, (method, path)


def test_the_page_is_not_in_the_api_schema(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]
