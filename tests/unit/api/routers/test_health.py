from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_and_docs_answer_without_a_key(app_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        r = app_client.get(path, headers={"X-API-Key": ""})
        assert r.status_code == 200, path


def test_openapi_describes_every_request_and_response_model(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model in ("RunRequest", "FailedRunResponse", "CatalogResponse", "JobView", "OutputFile"):
        assert model in schemas
    run = spec["paths"]["/cli/run"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RunRequest"
    )
    assert {"200", "404", "422"} <= set(run["responses"])
    # What a callback receives is declared: the job, in the shape `GET /jobs/{id}` has.
    [callback] = run["callbacks"].values()
    hook = callback["{$request.body#/callback_url}"]["post"]
    assert hook["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobView")
    assert {"Zyra-Job-Id", "Zyra-Signature"} <= {p["name"] for p in hook["parameters"]}
    job = spec["paths"]["/jobs/{job_id}"]["get"]["responses"]["200"]
    assert job["content"]["application/json"]["schema"]["$ref"].endswith("/JobView")
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
