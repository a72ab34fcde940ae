"""`python -m api`: the embedded default on one machine (uvicorn, one worker)."""

import uvicorn

from api.server import create_app
from api.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
