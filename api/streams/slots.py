"""How many event streams (SSE and WebSocket together) this API process keeps open: at
most `ZYRA_MAX_STREAMS`, and `ZYRA_MAX_STREAMS_PER_PRINCIPAL` of one principal. A
stream holds a socket and a little memory for as long as its client stays; without a
bound, one client could open them until the process runs out of descriptors.

Counted in the process (on the event loop: no lock), not in Redis: what runs out is
the process's own."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from api.observability.metrics import stream_closed, stream_opened

RETRY_AFTER_S = 5  # a stream frees its slot when its job ends or its client leaves


class StreamRefusedResponse(BaseModel):
    """503 for a new stream: `limit` or `dependency` says why."""

    detail: str
    limit: str | None = Field(
        None,
        description="The limit reached: `ZYRA_MAX_STREAMS` (this server's streams) or "
        "`ZYRA_MAX_STREAMS_PER_PRINCIPAL` (the caller's); absent when the server is "
        "shutting down",
    )
    dependency: str | None = Field(None, description="What is down, e.g. `Redis`.")


class StreamRefusedError(Exception):
    """No new stream: `limit` names the setting reached; None while the server shuts
    down. The detail fits a WebSocket close reason (123 bytes)."""

    def __init__(self, limit: str | None, detail: str) -> None:
        super().__init__(detail)
        self.limit, self.detail = limit, detail
        self.retry_after_s = RETRY_AFTER_S

    def response(self) -> JSONResponse:
        body = StreamRefusedResponse(detail=self.detail, limit=self.limit)
        return JSONResponse(
            body.model_dump(exclude_none=True),
            status_code=503,
            headers={"Retry-After": str(self.retry_after_s)},
        )


class StreamSlot:
    """One open stream; `release` when it ends (again: no effect)."""

    def __init__(self, slots: StreamSlots, principal_id: str, kind: str = "events") -> None:
        self._slots, self.principal_id, self.kind = slots, principal_id, kind
        self._held = True
        stream_opened(kind)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self.principal_id)
            stream_closed(self.kind)


class StreamSlots:
    def __init__(self, total: int, per_principal: int) -> None:
        """0: no limit."""
        self.total, self.per_principal = total, per_principal
        self.open = 0
        self._of: Counter[str] = Counter()

    def take(self, principal_id: str, kind: str = "events") -> StreamSlot:
        """A slot for one more stream of `principal_id`; StreamRefusedError if none is left.
        `kind` (for the metrics): `events` (SSE, WebSocket) or `long_poll`."""
        if self.per_principal and self._of[principal_id] >= self.per_principal:
            raise StreamRefusedError(
                "ZYRA_MAX_STREAMS_PER_PRINCIPAL",
                f"you have {self.per_principal} event streams open, the most one principal "
                f"may (ZYRA_MAX_STREAMS_PER_PRINCIPAL={self.per_principal}); close one or "
                f"retry in {RETRY_AFTER_S} s",
            )
        if self.total and self.open >= self.total:
            raise StreamRefusedError(
                "ZYRA_MAX_STREAMS",
                f"this server has {self.total} event streams open, the most it keeps "
                f"(ZYRA_MAX_STREAMS={self.total}); retry in {RETRY_AFTER_S} s",
            )
        self.open += 1
        self._of[principal_id] += 1
        return StreamSlot(self, principal_id, kind)

    def held_by(self, principal_id: str) -> int:
        return self._of[principal_id]

    def _release(self, principal_id: str) -> None:
        self.open -= 1
        self._of[principal_id] -= 1
        if not self._of[principal_id]:
            del self._of[principal_id]
