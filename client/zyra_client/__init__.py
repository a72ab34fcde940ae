"""A client of zyra-orchestrator: run Zyra's commands on a remote service.

Example::

    from zyra_client import Client
    with Client("http://127.0.0.1:8000", api_key="…") as zyra:
        field = zyra.upload("field.npy")
        job = zyra.submit("visualize", "heatmap", {"input": field.ref, "output": "map.png"})
        for event in job.events():
            print(event.stderr or "", end="")
        job.download("map.png")
"""

from zyra_client.async_client import AsyncClient, AsyncJob
from zyra_client.client import Client, Job
from zyra_client.errors import (
    AuthError,
    ConnectionFailed,
    JobFailed,
    NotFound,
    OutputsGone,
    RateLimited,
    ServiceUnavailable,
    Throttled,
    ValidationFailed,
    ZyraError,
)
from zyra_client.models import (
    Accepted,
    CancelResult,
    Catalog,
    CommandDescription,
    Event,
    JobList,
    JobView,
    OutputFile,
    StageDescription,
    Upload,
)

__all__ = [
    "Accepted",
    "AsyncClient",
    "AsyncJob",
    "AuthError",
    "CancelResult",
    "Catalog",
    "Client",
    "CommandDescription",
    "ConnectionFailed",
    "Event",
    "Job",
    "JobFailed",
    "JobList",
    "JobView",
    "NotFound",
    "OutputFile",
    "OutputsGone",
    "RateLimited",
    "ServiceUnavailable",
    "StageDescription",
    "Throttled",
    "Upload",
    "ValidationFailed",
    "ZyraError",
]
