"""The service the docs' blocks run against: what `make run` starts (its key, default
limits, no allowed path prefixes, no outbound exceptions), on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.settings import Settings
from tests.e2e.conftest import LIMITS_OFF, ApiServer, start_api, stop_api

# The Makefile's ZYRA_API_KEYS default: the key the pages name.
MAKE_RUN_KEYS = "dev:local-dev-key"
MAKE_RUN_KEY = "local-dev-key"


def _default(variable: str) -> str:
    return str(Settings.model_fields[variable.removeprefix("ZYRA_").lower()].default)


AS_MAKE_RUN = {
    "ZYRA_API_KEYS": MAKE_RUN_KEYS,
    "ZYRA_ALLOWED_PATH_PREFIXES": "",
    "ZYRA_OUTBOUND_ALLOW": "",
    # start_api turns the limits off for other tests; a reader's service has them.
    **{variable: _default(variable) for variable in LIMITS_OFF},
}


@pytest.fixture(scope="session")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("docs-api")
    server = start_api(folder, folder, **AS_MAKE_RUN)
    yield server
    stop_api(server)
