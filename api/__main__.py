"""`python -m api`: the embedded default on one machine (uvicorn, one worker)."""

import uvicorn

from api.observability.log_format import configure_api_logging, uvicorn_log_config
from api.server import create_app
from api.settings import Settings

__all__ = ["uvicorn_log_config"]

if __name__ == "__main__":
    settings = Settings()
    configure_api_logging(settings.log_format)  # ZYRA_LOG_FORMAT
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(settings.log_format),
        # The client's address comes from ZYRA_TRUSTED_PROXIES alone (api/limits): uvicorn
        # would otherwise believe X-Forwarded-For from 127.0.0.1 (FORWARDED_ALLOW_IPS).
        proxy_headers=False,
    )
