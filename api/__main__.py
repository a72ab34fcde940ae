"""`python -m api`: the embedded default on one machine (uvicorn, one worker)."""

import copy
import logging

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.security.log_redaction import RedactCredentials, install_log_redaction
from api.server import create_app
from api.settings import Settings


def uvicorn_log_config() -> dict:
    """uvicorn's own, with `?api_key=` values redacted on every handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_credentials"] = {"()": RedactCredentials}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_credentials")
    return config


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(),
        # The client's address comes from ZYRA_TRUSTED_PROXIES alone (api/limits): uvicorn
        # would otherwise believe X-Forwarded-For from 127.0.0.1 (FORWARDED_ALLOW_IPS).
        proxy_headers=False,
    )
