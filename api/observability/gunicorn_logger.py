"""Gunicorn's logger class under `ZYRA_LOG_FORMAT=json` (api/gunicorn_conf.py): its
own handlers write JSON from the first line on (`Starting gunicorn` comes before any
server hook), and again after a reload (SIGHUP) makes them anew."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from api.observability.log_format import ApiJsonFormatter


class JsonLogger(Logger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = ApiJsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
