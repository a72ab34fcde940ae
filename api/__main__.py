"""`python -m api`: the embedded default on one machine (uvicorn, one worker)."""

import logging

import uvicorn

from api.server import create_app
from api.settings import Settings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
