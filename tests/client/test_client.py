"""The sync client against a real API server: run, submit, wait, events, download, cancel."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from zyra_client import (
    AuthError,
    Client,
    JobFailed,
    NotFound,
    ValidationFailed,
)

from tests.client.conftest import HEATMAP_ARGS, wait_for_status
from tests.client.tcp_proxy import CuttableProxy
from tests.e2e.conftest import API_KEY, ApiServer


def heatmap_args(zyra: Client, inputs: Path) -> dict[str, object]:
    return {"input": zyra.upload(inputs / "field.npy").ref, "output": "map.png", **HEATMAP_ARGS}


def test_run_answers_the_ended_job_and_its_output_downloads(
    zyra: Client, inputs: Path, tmp_path: Path
) -> None:
    view = zyra.run("visualize", "heatmap", heatmap_args(zyra, inputs), metadata={"n": 1})

    assert (view.status, view.exit_code, view.reason) == ("succeeded", 0, "Completed")
    assert view.mode == "sync" and view.metadata == {"n": 1}
    assert [o.name for o in view.outputs] == ["map.png"]
    written = zyra.job(view.job_id).download(tmp_path)  # a folder: the served name
    assert written == tmp_path / "map.png"
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written.stat().st_size == view.outputs[0].size


def test_submit_wait_events_download(zyra: Client, inputs: Path, tmp_path: Path) -> None:
    job = zyra.submit("visualize", "heatmap", heatmap_args(zyra, inputs))

    view = job.wait(timeout=60)
    events = list(job.events())  # after the end: the whole history, then the stream ends

    assert view.succeeded and job.view is view
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].status == "queued" and events[-1].terminal
    assert (events[-1].status, events[-1].exit_code) == ("succeeded", 0)
    assert "".join(e.stderr or "" for e in events) == view.stderr
    assert job.download(tmp_path / "sub" / "m.png", file="map.png").read_bytes()[:4] == b"\x89PNG"
    assert list(job.events(since=events[-1].seq)) == []  # past the end: nothing


def test_a_dropped_event_stream_resumes_after_the_last_event(
    server: ApiServer, silent_server: str
) -> None:
    proxy = CuttableProxy(int(server.url.rsplit(":", 1)[1]))
    try:
        with Client(proxy.url, api_key=API_KEY) as zyra:
            job = zyra.submit("acquire", "http", {"url": silent_server, "output": "x"})
            stream = job.events()
            before = [next(stream) for _ in range(3)]  # queued, 0.1, running
            assert before[-1].status == "running"
            proxy.cut()  # mid-stream: the client sees a broken connection
            job.cancel()
            after = list(stream)
    finally:
        proxy.close()

    seqs = [e.seq for e in before + after]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing twice
    assert after[-1].status == "cancelled"
    resumed = [line for line in proxy.first_lines if b"/ws/jobs/" in line]
    assert len(resumed) >= 2 and b"since=3" in resumed[-1], resumed


def test_wait_with_a_timeout_raises_while_the_job_runs(zyra: Client, silent_server: str) -> None:
    job = zyra.submit("acquire", "http", {"url": silent_server, "output": "x"})
    with pytest.raises(TimeoutError):
        job.wait(timeout=1)
    result = job.cancel()
    assert result.cancelled
    assert job.wait(timeout=30).status == "cancelled"


def test_cancel_ends_a_running_job(zyra: Client, silent_server: str) -> None:
    job = zyra.submit("acquire", "http", {"url": silent_server, "output": "x"})
    wait_for_status(zyra, job.id, "running")
    assert job.cancel().cancelled
    view = job.wait(timeout=30)
    assert (view.status, view.reason) == ("cancelled", "Cancelled")
    assert not job.cancel().cancelled  # ended: nothing changes


def test_jobs_follows_the_cursor(zyra: Client, inputs: Path) -> None:
    for _ in range(3):
        zyra.run("visualize", "heatmap", heatmap_args(zyra, inputs))
    listed = list(zyra.jobs(limit=1, stage="visualize"))
    assert len(listed) >= 3 and len({v.job_id for v in listed}) == len(listed)


def test_a_refused_argument_is_validation_failed_naming_it(zyra: Client) -> None:
    with pytest.raises(ValidationFailed) as refused:
        zyra.run("visualize", "heatmap", {"input": "/etc/passwd", "width": "wide"})
    assert refused.value.status_code == 422
    assert refused.value.fields == ["args.input", "args.width"]
    assert refused.value.message.startswith("args.input: absolute paths are refused")
    assert "args.width: wrong type" in refused.value.message


def test_fail_on_nonzero_exit_is_job_failed_with_the_view(zyra: Client, inputs: Path) -> None:
    args = {**heatmap_args(zyra, inputs), "cmap": "no-such-colormap"}
    with pytest.raises(JobFailed) as failed:
        zyra.run("visualize", "heatmap", args, fail_on_nonzero_exit=True)
    assert failed.value.view.status == "failed" and failed.value.view.exit_code != 0
    assert "visualize heatmap failed" in failed.value.message


def test_unknown_job_command_and_key(zyra: Client, server: ApiServer) -> None:
    with pytest.raises(NotFound):
        zyra.job("0" * 32)
    with pytest.raises(NotFound) as unknown:
        zyra.run("visualize", "no-such-command")
    assert "unknown command 'no-such-command'" in unknown.value.message
    with Client(server.url, api_key="wrong") as stranger, pytest.raises(AuthError) as refused:
        stranger.commands()
    assert refused.value.status_code == 401


def test_commands_is_fetched_once(zyra: Client) -> None:
    first = zyra.commands()
    assert zyra.commands() is first
    heatmap = first.stages["visualize"].commands["heatmap"]
    assert heatmap.arguments["input"]["x-zyra"]["path"] == "input"
    assert first.stage("render") == ("visualize", first.stages["visualize"])


def test_several_outputs_download_each_by_name_or_all_as_a_zip(
    zyra: Client, inputs: Path, tmp_path: Path
) -> None:
    shutil.copy(inputs / "field.npy", tmp_path / "other.npy")
    refs = [zyra.upload(inputs / "field.npy").ref, zyra.upload(tmp_path / "other.npy").ref]
    view = zyra.run("visualize", "heatmap", {"inputs": refs, "output_dir": "maps", **HEATMAP_ARGS})
    names = sorted(o.name for o in view.outputs)
    assert view.succeeded and len(names) == 2 and all(n.startswith("maps/") for n in names)
    job = zyra.job(view.job_id)

    (tmp_path / "one").mkdir()
    one = job.download(tmp_path / "one", file=names[1])  # a folder: the served name
    assert one == tmp_path / "one" / Path(names[1]).name
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sizes = {o.name: o.size for o in view.outputs}
    assert one.stat().st_size == sizes[names[1]]

    everything = job.download(tmp_path / "all.zip")
    with zipfile.ZipFile(everything) as archive:
        assert sorted(archive.namelist()) == names
        assert archive.read(names[1]) == one.read_bytes()
