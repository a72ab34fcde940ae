"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from runner.catalog import CommandCatalog


@pytest.fixture(scope="session")
def catalog() -> CommandCatalog:
    return CommandCatalog.from_zyra()
