"""The asyncio client against a real API server: the same calls as the sync one, awaited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from zyra_client import AsyncClient, NotFound, ValidationFailed

from tests.client.conftest import HEATMAP_ARGS
from tests.client.tcp_proxy import CuttableProxy
from tests.e2e.conftest import API_KEY, ApiServer


def test_run_submit_wait_events_download(server: ApiServer, inputs: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url, api_key=API_KEY) as zyra:
            catalog = await zyra.commands()
            assert "heatmap" in catalog.stages["visualize"].commands
            upload = await zyra.upload(inputs / "field.npy")
            args = {"input": upload.ref, "output": "map.png", **HEATMAP_ARGS}

            view = await zyra.run("visualize", "heatmap", args)
            assert (view.status, view.exit_code) == ("succeeded", 0)

            job = await zyra.submit("visualize", "heatmap", args)
            events = [event async for event in job.events()]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[-1].status == "succeeded"
            ended = await job.wait(timeout=30)
            assert ended.outputs[0].name == "map.png"
            written = await job.download(tmp_path / "out" / "map.png")
            assert written.read_bytes()[:4] == b"\x89PNG"
            listed = [v.job_id async for v in zyra.jobs(limit=1)]
            assert job.id in listed and view.job_id in listed

    asyncio.run(scenario())


def test_cancel_and_a_dropped_stream(server: ApiServer, silent_server: str) -> None:
    proxy = CuttableProxy(int(server.url.rsplit(":", 1)[1]))

    async def scenario() -> list[int]:
        async with AsyncClient(proxy.url, api_key=API_KEY) as zyra:
            job = await zyra.submit("acquire", "http", {"url": silent_server, "output": "x"})
            stream = job.events()
            seqs = [(await anext(stream)).seq for _ in range(3)]
            proxy.cut()
            assert (await job.cancel()).cancelled
            seqs += [event.seq async for event in stream]
            view = await job.wait(timeout=30)
            assert (view.status, view.reason) == ("cancelled", "Cancelled")
            return seqs

    try:
        seqs = asyncio.run(scenario())
    finally:
        proxy.close()
    assert seqs == list(range(1, len(seqs) + 1))


def test_errors_are_the_same_types(server: ApiServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url, api_key=API_KEY) as zyra:
            with pytest.raises(NotFound):
                await zyra.job("f" * 32)
            with pytest.raises(ValidationFailed) as refused:
                await zyra.submit("visualize", "heatmap", {"width": "wide"})
            assert refused.value.fields == ["args.width"]

    asyncio.run(scenario())
