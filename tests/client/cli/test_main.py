"""`zyra-remote` run as a user runs it: a subprocess of the venv's script, in a folder of
its own, against a real API server."""

from __future__ import annotations

import hashlib
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from zyra_client import Client

from tests.client.conftest import HEATMAP_FLAGS, ZYRA_REMOTE, upload_count, wait_for_status
from tests.e2e.conftest import ApiServer

ZYRA = Path(sys.executable).parent / "zyra"


def remote(
    *words: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZYRA_REMOTE), *words], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_a_heatmap_lands_where_named_and_matches_a_local_run(
    user_env: dict[str, str], inputs: Path, tmp_path: Path
) -> None:
    here, local = tmp_path / "remote", tmp_path / "local"
    for folder in (here, local):
        folder.mkdir()
        shutil.copy(inputs / "field.npy", folder / "field.npy")
    (local / "out").mkdir()  # Zyra does not make it; zyra-remote does
    words = ["visualize", "heatmap", "--input", "field.npy", "--output", "out/map.png"]

    ran = remote(*words, *HEATMAP_FLAGS, env=user_env, cwd=here)
    direct = subprocess.run(
        [str(ZYRA), *words, *HEATMAP_FLAGS], cwd=local, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    assert direct.returncode == 0, direct.stderr
    assert (here / "out" / "map.png").read_bytes() == (local / "out" / "map.png").read_bytes()
    assert ran.stderr == "INFO: map.png\n"  # Zyra's own line, with the name it was given
    assert list(Path(user_env["XDG_CACHE_HOME"], "zyra-remote").glob("*/*.json"))


def test_a_failing_command_exits_with_its_code_and_zyras_message(
    user_env: dict[str, str], inputs: Path, tmp_path: Path
) -> None:
    words = ["visualize", "heatmap", "--input", str(inputs / "field.npy"), "--output", "x.png",
             "--cmap", "no-such-colormap", *HEATMAP_FLAGS]  # fmt: skip
    direct = subprocess.run([str(ZYRA), *words], cwd=tmp_path, capture_output=True, text=True)
    ran = remote(*words, env=user_env, cwd=tmp_path)

    assert direct.returncode != 0
    assert ran.returncode == direct.returncode
    assert "'no-such-colormap' is not a valid value for cmap" in ran.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_wrong_argument_fails_before_any_upload(
    user_env: dict[str, str], server: ApiServer, inputs: Path, tmp_path: Path
) -> None:
    shutil.copy(inputs / "field.npy", tmp_path / "field.npy")
    before = upload_count(server)
    cases = {
        ("--width", "wide"): "argument --width: invalid int value: 'wide'",
        ("--legend-orientation", "diagonal"): "argument --legend-orientation: invalid choice",
        ("--no-such-option",): "unrecognized arguments: --no-such-option",
    }
    for extra, expected in cases.items():
        ran = remote("visualize", "heatmap", "--input", "field.npy", "--output", "m.png",
                     *extra, env=user_env, cwd=tmp_path)  # fmt: skip
        assert ran.returncode == 2, ran.stderr
        assert ran.stderr.count("\n") == 1 and expected in ran.stderr, ran.stderr
    missing = remote("visualize", "heatmap", "--input", "data/nope.npy", "--output", "m.png",
                     env=user_env, cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2
    assert "argument --input: no such file: data/nope.npy" in missing.stderr
    assert upload_count(server) == before


def test_a_server_refusal_is_one_line_naming_the_field(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    # Not a local file: passed on as a path on the server, which refuses it.
    ran = remote("visualize", "heatmap", "--input", "/srv/elsewhere/f.npy", "--output", "m.png",
                 env=user_env, cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1
    assert ran.stderr.startswith("zyra-remote visualize heatmap: error: args.input: ")


def test_ctrl_c_cancels_the_remote_job(
    user_env: dict[str, str], server: ApiServer, silent_server: str, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [str(ZYRA_REMOTE), "acquire", "http", silent_server, "--output", "page.html"],
        env=user_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with Client(server.url, api_key=user_env["ZYRA_API_KEY"]) as zyra:
        deadline = time.monotonic() + 60
        job_id = None
        while job_id is None:
            assert time.monotonic() < deadline and process.poll() is None
            job_id = next((v.job_id for v in zyra.jobs(limit=5, status="running")
                           if v.args.get("url") == silent_server), None)  # fmt: skip
            time.sleep(0.1)
        wait_for_status(zyra, job_id, "running")
        time.sleep(0.5)  # following its events by now
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        view = zyra.job(job_id).wait(timeout=30)

    assert process.returncode == 130, stderr
    assert f"interrupted: job {job_id} cancelled" in stderr
    assert (view.status, view.reason) == ("cancelled", "Cancelled")


def submit_heatmap(user_env: dict[str, str], inputs: Path, tmp_path: Path) -> str:
    """`zyra-remote --async` of a heatmap of field.npy into map.png: the job id it printed."""
    shutil.copy(inputs / "field.npy", tmp_path / "field.npy")
    words = ["visualize", "heatmap", "--input", "field.npy", "--output", "map.png"]
    submitted = remote("--async", *words, *HEATMAP_FLAGS, env=user_env, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def test_async_prints_the_job_id_and_job_commands_use_it(
    user_env: dict[str, str], inputs: Path, tmp_path: Path
) -> None:
    job_id = submit_heatmap(user_env, inputs, tmp_path)
    assert len(job_id) == 32 and not (tmp_path / "map.png").exists()

    watched = remote("watch", job_id, env=user_env, cwd=tmp_path)
    assert (watched.returncode, watched.stderr) == (0, "INFO: map.png\n")
    logs = remote("logs", job_id, env=user_env, cwd=tmp_path)
    assert logs.stderr == "INFO: map.png\n"
    fetched = remote("download", job_id, "-o", "got/", env=user_env, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "got" / "map.png").read_bytes()[:4] == b"\x89PNG"
    listed = remote("jobs", "--limit", "3", env=user_env, cwd=tmp_path)
    assert job_id in listed.stdout
    cancelled = remote("cancel", job_id, env=user_env, cwd=tmp_path)
    assert "already finished" in cancelled.stdout


PIPELINE = """stages:
  - stage: visualize
    command: heatmap
    args: {{input: "{field}", output: heatmap.png, no_coastline: true, no_borders: true,
            no_gridlines: true}}
  - stage: disseminate
    command: local
    args: {{input: heatmap.png, path: export/heatmap.png}}
"""


def test_a_pipelines_outputs_land_where_a_local_zyra_run_writes_them(
    user_env: dict[str, str], inputs: Path, tmp_path: Path
) -> None:
    here, local = tmp_path / "remote", tmp_path / "local"
    here.mkdir(), local.mkdir()
    shutil.copy(inputs / "field.npy", local / "field.npy")
    uploaded = remote("upload", str(inputs / "field.npy"), env=user_env, cwd=here)
    assert uploaded.returncode == 0, uploaded.stderr
    field_id = uploaded.stdout.strip()
    (here / "pipeline.yaml").write_text(PIPELINE.format(field=field_id))
    (local / "pipeline.yaml").write_text(PIPELINE.format(field="field.npy"))

    ran = remote("run", "pipeline.yaml", env=user_env, cwd=here)
    direct = subprocess.run(
        [str(ZYRA), "run", "pipeline.yaml"], cwd=local, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    assert direct.returncode == 0, direct.stderr
    for name in ("heatmap.png", "export/heatmap.png"):
        assert (here / name).read_bytes() == (local / name).read_bytes(), name
    assert sorted(p.name for p in here.iterdir()) == ["export", "heatmap.png", "pipeline.yaml"]
    assert (here / "pipeline.yaml").read_text() == PIPELINE.format(field=field_id)


def test_upload_prints_a_reference_a_line_each_and_sends_nothing_if_a_file_is_missing(
    user_env: dict[str, str], zyra: Client, server: ApiServer, inputs: Path, tmp_path: Path
) -> None:
    shutil.copy(inputs / "field.npy", tmp_path / "a.npy")
    (tmp_path / "b.txt").write_text("second\n")
    sent = remote("upload", "a.npy", "b.txt", env=user_env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    refs = sent.stdout.splitlines()
    assert len(refs) == 2 and all(re.fullmatch(r"file_id:[0-9a-f]{32}", ref) for ref in refs)
    metas = [zyra.request("GET", f"/files/{ref.removeprefix('file_id:')}").json() for ref in refs]
    assert [(m["filename"], m["sha256"]) for m in metas] == [
        (name, hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
        for name in ("a.npy", "b.txt")
    ]

    before = upload_count(server)
    for missing in (["a.npy", "nope.npy"], ["a.npy", str(tmp_path)]):
        refused = remote("upload", *missing, env=user_env, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.startswith("zyra-remote upload: error: "), refused.stderr
        assert missing[1] in refused.stderr
    assert upload_count(server) == before


def test_server_and_key_come_from_the_config_file(user_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in user_env.items() if k not in ("ZYRA_URL", "ZYRA_API_KEY")}
    config = Path(env["XDG_CONFIG_HOME"], "zyra-remote", "config.toml")
    config.parent.mkdir(parents=True)
    config.write_text(
        f'server = "{user_env["ZYRA_URL"]}"\napi_key = "{user_env["ZYRA_API_KEY"]}"\n'
    )
    assert remote("jobs", "--limit", "1", env=env, cwd=tmp_path).returncode == 0
    wrong_key = remote("--api-key", "wrong", "jobs", env=env, cwd=tmp_path)
    assert wrong_key.returncode == 1 and "zyra-remote: error:" in wrong_key.stderr
    config.unlink()
    nowhere = remote("jobs", env=env, cwd=tmp_path)
    assert nowhere.returncode == 2 and "no server" in nowhere.stderr


def read_all(fd: int) -> bytes:
    """Everything written to a pty until its last writer closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_watch_on_a_terminal_shows_the_status_and_progress_line(
    user_env: dict[str, str], inputs: Path, tmp_path: Path
) -> None:
    job_id = submit_heatmap(user_env, inputs, tmp_path)
    main, terminal = pty.openpty()
    try:
        watching = subprocess.Popen(
            [str(ZYRA_REMOTE), "watch", job_id], env=user_env, cwd=tmp_path,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
        )  # fmt: skip
        os.close(terminal)
        screen = read_all(main).decode()
        assert watching.wait(timeout=60) == 0
    finally:
        os.close(main)
    # The log line, then the last state left on a line of its own, the bar full.
    assert "INFO: map.png" in screen
    last = screen.rsplit("\r\x1b[K", 1)[-1]
    assert re.fullmatch(rf"\[#{{24}}\] 100% succeeded \d+\.\ds  job {job_id}\r?\n", last), repr(
        screen
    )
    # Not drawn where stderr is not a terminal: the command's stderr is all there is.
    piped = remote("watch", job_id, env=user_env, cwd=tmp_path)
    assert piped.stderr == "INFO: map.png\n"
