"""`POST /upload` and `GET /files/{id}`: the answers clients parse, byte for byte."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient

MISSING_FILE_MESSAGE = "file: send the file as multipart/form-data in the field 'file'"
MISSING_FILE = [{"loc": ["body", "file"], "type": "missing",
                 "msg": "send the file as multipart/form-data in the field 'file'"}]  # fmt: skip


def rendered(content: object) -> bytes:
    """The body as the service writes it (compact JSON, keys in the order written)."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def test_an_upload_answers_201_with_its_metadata(app_client: TestClient) -> None:
    r = app_client.post("/upload", files={"file": ("field.npy", b"abc")})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert (meta["filename"], meta["size"], meta["sha256"], meta["owner"]) == (
        "field.npy", 3, hashlib.sha256(b"abc").hexdigest(), "key:unit",
    )  # fmt: skip
    assert app_client.get(f"/files/{meta['file_id']}").json() == meta


def test_a_body_that_is_not_multipart_answers_exactly_422(app_client: TestClient) -> None:
    r = app_client.post("/upload", content=b"raw")
    assert (r.status_code, r.content) == (
        422,
        rendered({"detail": MISSING_FILE, "message": MISSING_FILE_MESSAGE}),
    )


def test_a_multipart_body_without_the_file_field_answers_exactly_422(
    app_client: TestClient,
) -> None:
    r = app_client.post("/upload", files={"other": ("a.txt", b"x")})
    assert (r.status_code, r.content) == (
        422,
        rendered({"detail": MISSING_FILE, "message": MISSING_FILE_MESSAGE}),
    )


def test_a_malformed_multipart_body_answers_exactly_400(app_client: TestClient) -> None:
    r = app_client.post(
        "/upload",
        content=b"garbage",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    detail = "malformed multipart body: Expected boundary character 45, got 103 at index 2"
    assert (r.status_code, r.content) == (400, rendered({"detail": detail}))


def test_an_unknown_upload_answers_exactly_404(app_client: TestClient) -> None:
    r = app_client.get("/files/" + "0" * 32)
    assert (r.status_code, r.content) == (
        404,
        rendered({"detail": f"no uploaded file {'0' * 32!r}"}),
    )
