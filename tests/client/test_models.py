"""The client's models name exactly the fields of the server's OpenAPI components."""

from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel
from zyra_client import models

from tests.e2e.conftest import ApiServer

# client model → the OpenAPI component it reads
COMPONENTS: dict[type[BaseModel], str] = {
    models.JobView: "JobView",
    models.OutputFile: "OutputFile",
    models.CallbackDelivery: "CallbackDelivery",
    models.JobList: "JobList",
    models.Upload: "UploadMeta",
    models.Catalog: "CatalogResponse",
    models.StageDescription: "StageDescription",
    models.CommandDescription: "CommandDescription",
    models.Accepted: "AcceptedResponse",
    models.CancelResult: "CancelResponse",
}


@pytest.fixture(scope="module")
def schemas(server: ApiServer) -> dict[str, dict]:
    return httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize("model", COMPONENTS, ids=lambda m: m.__name__)
def test_fields_match_the_servers_component(model: type[BaseModel], schemas: dict) -> None:
    assert wire_names(model) == set(schemas[COMPONENTS[model]]["properties"])


def test_required_fields_are_required_here_too(schemas: dict) -> None:
    for model, component in COMPONENTS.items():
        required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
        assert required <= set(schemas[component].get("required", [])), model.__name__
