"""The dashboard: a static page (HTML, ES modules, CSS) in `static/`, served at `/ui` by
api/routers/dashboard.py. The page holds no data: every call it makes goes to the API with
the credential its user typed, so serving it needs none."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX = "index.html"
