from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_and_docs_answer_without_a_key(app_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        r = app_client.get(path, headers={"X-API-Key": ""})
        assert r.status_code == 200, path


def test_openapi_describes_every_request_and_response_model(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in ("RunRequest", "RunResponse", "CatalogResponse", "JobView", "OutputFile"):
        assert model in schemas
    run = spec["paths"]["/cli/run"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RunRequest"
    )
    assert {"200", "404", "422"} <= set(run["responses"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
