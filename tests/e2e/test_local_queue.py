"""The local backend runs at most ZYRA_LOCAL_MAX_RUNNING runners; later jobs wait queued."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import start_api, stop_api
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status


def test_jobs_beyond_the_cap_wait_queued_and_start_in_turn(
    tmp_path: Path, inputs: Path, silent_server: str
) -> None:
    api = start_api(tmp_path, inputs, ZYRA_LOCAL_MAX_RUNNING="1")
    try:
        with api.client() as client:
            first = submit(client, "acquire", "http", {"url": silent_server, "output": "a"})
            second = submit(client, "acquire", "http", {"url": silent_server, "output": "b"})
            third = submit(client, "acquire", "http", {"url": silent_server, "output": "c"})
            wait_status(client, first, "running")
            assert client.get(f"/jobs/{second}").json()["status"] == "queued"

            # Cancelling a waiting job ends it at once; it never ran.
            assert client.delete(f"/jobs/{third}").json()["cancelled"] is True
            never_ran = wait_finished(client, third, timeout_s=10)
            assert (never_ran["status"], never_ran["exit_code"]) == ("cancelled", None)
            assert never_ran["started_at"] is None
            assert [m.get("status") for m in read_stream(api, third).messages] == [
                "queued", "cancelled"
            ]  # fmt: skip

            client.delete(f"/jobs/{first}")
            assert wait_finished(client, first)["status"] == "cancelled"
            wait_status(client, second, "running")  # its turn came
            client.delete(f"/jobs/{second}")
            assert wait_finished(client, second)["status"] == "cancelled"
    finally:
        stop_api(api)
