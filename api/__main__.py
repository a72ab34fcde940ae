"""`python -m api`: the embedded default on one machine (uvicorn, one worker)."""

import os

import uvicorn

from api.server import create_app

if __name__ == "__main__":
    uvicorn.run(
        create_app(),
        host=os.environ.get("ZYRA_HOST", "127.0.0.1"),
        port=int(os.environ.get("ZYRA_PORT", "8000")),
    )
