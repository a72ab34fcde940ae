"""The dashboard at /ui in a real browser (Debian's chromium driven by Playwright) against
a real API: a heatmap run from the form with an uploaded file, followed live to its end,
its PNG downloaded through the page; cancel; abuse (markup in a job's data, a wrong key,
someone else's job); keyboard-only use and accessible names; a 320 px wide screen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.oidc import AUDIENCE, LoopbackIssuer

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright downloads no browser
OTHER_KEY = "e2e-other-key"
SLASHED_KEY = "e2e/slashed=key"  # no HTTP token: it cannot travel as a WebSocket subprotocol
RUN_ONLY_KEY = "e2e-run-only-key"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CONTROLS = "#main input, #main select, #main textarea, #main button"
WATCH_STATUS = """() => {
  const status = document.querySelector("#job-status");
  window.__seen = [status.textContent];
  new MutationObserver(() => {
    if (window.__seen.at(-1) !== status.textContent) window.__seen.push(status.textContent);
  }).observe(status, { childList: true, subtree: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def dashboard_api(
    tmp_path_factory: pytest.TempPathFactory, inputs: Path, issuer: LoopbackIssuer
) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("dashboard"),
        inputs,
        ZYRA_API_KEYS=(
            f"e2e:{API_KEY},other:{OTHER_KEY},slashed:{SLASHED_KEY},runonly:{RUN_ONLY_KEY} run"
        ),
        # One running job at a time per key: a job that never ends holds the next one
        # queued, so that the page is seen following it from queued to succeeded.
        ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL="1",
        # Access tokens (JWTs) of an issuer on loopback (tests/oidc.py).
        ZYRA_OAUTH2_ISSUER=issuer.issuer,
        ZYRA_OAUTH2_AUDIENCE=AUDIENCE,
        ZYRA_OAUTH2_SCOPE_PREFIX="zyra:",
    )
    yield server
    stop_api(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Page
    url: str
    # Uncaught errors, CSP refusals and JavaScript dialogs (alert/confirm): none expected.
    problems: list[str] = field(default_factory=list)

    def sign_in(self, key: str = API_KEY, kind: str = "api_key") -> None:
        self.page.goto(f"{self.url}/ui")
        self.page.get_by_label("Credential type").select_option(kind)
        self.page.get_by_label("API key or token").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def credential_kept(self) -> str | None:
        return self.page.evaluate("sessionStorage.getItem('zyra.credential')")


@pytest.fixture
def tab(browser: Browser, dashboard_api: ApiServer) -> Iterator[Tab]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1024, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    opened = Tab(page, dashboard_api.url)

    def on_console(message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        if message.type == "error" and "Content Security Policy" in text:  # type: ignore[attr-defined]
            opened.problems.append(text)

    def on_dialog(dialog: object) -> None:
        opened.problems.append(f"a {dialog.type} dialog: {dialog.message}")  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("pageerror", lambda error: opened.problems.append(f"uncaught: {error}"))
    page.on("console", on_console)
    page.on("dialog", on_dialog)
    yield opened
    context.close()


@pytest.fixture
def blocker(dashboard_api: ApiServer, silent_server: str) -> Iterator[str]:
    """A job of ours that runs until cancelled (it waits on a server that never answers)."""
    with dashboard_api.client() as api:
        job_id = submit(api, "acquire", "http", {"url": silent_server, "output": "x"})
        wait_status(api, job_id, "running")
        yield job_id
        api.delete(f"/jobs/{job_id}")
        wait_finished(api, job_id)


def fits(page: Page, width: int) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_heatmap_run_from_the_form_is_followed_live_and_its_png_downloaded(
    tab: Tab, dashboard_api: ApiServer, blocker: str, tmp_path: Path
) -> None:
    page = tab.page
    field_npy = tmp_path / "field.npy"
    np.save(field_npy, np.cos(np.linspace(0, 3, 24 * 48)).reshape(24, 48))

    tab.sign_in()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_focused()
    page.get_by_role("link", name="Run a command").click()
    page.get_by_label("Stage").select_option("visualize")
    page.get_by_label("Command", exact=True).select_option("heatmap")
    page.get_by_label("input: upload a file", exact=True).set_input_files(field_npy)
    page.get_by_label("output (--output)", exact=True).fill("heatmap.png")
    for flag in ("no_coastline", "no_borders", "no_gridlines"):
        page.get_by_label(f"{flag} (--{flag.replace('_', '-')})", exact=True).check()
    page.get_by_role("button", name="Run", exact=True).click()

    # The job page, while our other job still runs: this one waits, queued.
    expect(page.get_by_role("heading", name="visualize heatmap", level=1)).to_be_visible()
    job_id = page.locator("#job-id").inner_text()
    assert page.url.endswith(f"/ui#/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("queued")
    page.evaluate(WATCH_STATUS)
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page
    expect(page.locator("#job-log")).to_have_text("")
    expect(page.locator("#job-cancel")).to_be_visible()

    with dashboard_api.client() as api:
        api.delete(f"/jobs/{blocker}")  # room for ours: it runs now
        expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
        expect(page.locator("#job-log")).to_contain_text("INFO: heatmap.png")
        assert page.evaluate("window.sameDocument") is True
        seen = page.evaluate("window.__seen")
        assert seen[0] == "queued" and "running" in seen and seen[-1] == "succeeded", seen
        expect(page.locator("#announcer")).to_have_text("Job status: succeeded")
        expect(page.locator("#job-exit-code")).to_have_text("0")
        expect(page.locator("#job-progress-text")).to_have_text("100 %")
        expect(page.locator("#job-cancel")).to_be_hidden()
        job = api.get(f"/jobs/{job_id}").json()
        assert job["args"]["input"].startswith("file_id:")
        assert job["args"]["no_coastline"] is job["args"]["no_borders"] is True
        assert job["mode"] == "async"

        with page.expect_download() as started:
            page.get_by_role("button", name="Download heatmap.png").click()
        download = started.value
        assert download.suggested_filename == "heatmap.png"
        downloaded = Path(download.path()).read_bytes()
        direct = api.get(f"/jobs/{job_id}/download", params={"file": "heatmap.png"})
    assert direct.status_code == 200
    assert downloaded == direct.content
    assert downloaded.startswith(b"\x89PNG\r\n\x1a\n")
    expect(page.locator("#announcer")).to_have_text("Downloaded heatmap.png")

    preview = page.get_by_role("img", name="Preview of heatmap.png")
    expect(preview).to_be_visible()
    page.wait_for_function("document.querySelector('img.preview').naturalWidth > 0")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "finished-job.png"
    page.screenshot(path=shot, full_page=True)
    print(f"\nscreenshot of the finished job page: {shot.relative_to(REPO)}")

    page.set_viewport_size({"width": 320, "height": 800})
    assert fits(page, 320), "the job page scrolls sideways at 320 px"
    page.screenshot(path=ARTIFACTS / "finished-job-320px.png", full_page=True)
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator(f'[data-job-id="{job_id}"]')).to_contain_text("succeeded")
    assert fits(page, 320), "the jobs list scrolls sideways at 320 px"
    assert tab.problems == []


# Per argument of the command shown: its control (by id) and that control's label text.
ARGUMENT_CONTROLS = """names => names.map(name => {
  const control = document.getElementById("arg-" + name);
  return [name, control ? control.type : null,
          control ? [...control.labels].map(l => l.textContent.trim()).join(" ") : ""];
})"""


def test_the_form_has_a_labelled_control_for_every_argument_of_every_command(
    tab: Tab, dashboard_api: ApiServer
) -> None:
    with dashboard_api.client() as api:
        stages = api.get("/cli/commands").json()["stages"]
    page = tab.page
    tab.sign_in()
    page.get_by_role("link", name="Run a command").click()
    shown = 0
    for stage, described in stages.items():
        page.get_by_label("Stage").select_option(stage)
        for command, spec in described["commands"].items():
            page.get_by_label("Command", exact=True).select_option(command)
            expect(page.locator("#run-description")).to_contain_text(f"{stage} {command}:")
            properties = spec["schema"]["properties"]
            for name, kind, label in page.evaluate(ARGUMENT_CONTROLS, list(properties)):
                schema = properties[name]
                assert kind is not None, f"{stage} {command}: no control for {name}"
                assert label.startswith(name), f"{stage} {command} {name}: label {label!r}"
                if schema["x-zyra"].get("secret") and schema.get("type") == "string":
                    assert kind == "password", f"{stage} {command} {name} is shown"
                if schema.get("type") == "boolean":
                    assert kind == "checkbox"
                if "enum" in schema:
                    assert kind == "select-one"
                if schema["x-zyra"]["path"] == "input":
                    assert page.locator(f"#arg-{name}-file").get_attribute("type") == "file"
                shown += 1
    assert shown > 100
    assert tab.problems == []


def test_the_form_types_values_checks_them_and_shows_the_servers_refusals(
    tab: Tab, dashboard_api: ApiServer, inputs: Path
) -> None:
    page = tab.page
    uploads: list[str] = []
    page.on(
        "request",
        lambda r: r.method == "POST" and r.url.endswith("/upload") and uploads.append(r.url),
    )
    tab.sign_in()
    page.goto(f"{dashboard_api.url}/ui#/run/visualize/heatmap")
    typed_input = page.get_by_label("input: or a server path, URL or file_id:…", exact=True)
    typed_input.fill(str(inputs / "field.npy"))
    page.get_by_label("input: upload a file", exact=True).set_input_files(inputs / "field.npy")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(
        "input upload a file or type where it is, not both"
    )
    typed_input.fill("")
    page.get_by_label("output (--output)", exact=True).fill("../escape.png")
    page.get_by_label("vmin (--vmin)", exact=True).fill("")
    page.get_by_label("extent (--extent), one per line", exact=True).fill("-180\n180\n-90\n90")
    page.get_by_label("width (--width)", exact=True).fill("300")
    page.get_by_label("legend_orientation (--legend-orientation)").select_option("vertical")
    page.get_by_label("label (--label)", exact=True).fill("  spaced label ")
    page.get_by_label("no_coastline (--no-coastline)", exact=True).check()  # offline: no maps
    page.get_by_label("no_borders (--no-borders)", exact=True).check()
    page.get_by_label("Metadata, a JSON object").fill("[1, 2]")
    page.get_by_role("button", name="Run", exact=True).click()
    # Checked in the page first: nothing is sent.
    expect(page.get_by_role("alert")).to_contain_text("Metadata must be a JSON object")
    expect(page.get_by_label("Metadata, a JSON object")).to_be_focused()
    page.get_by_label("Metadata, a JSON object").fill('{"ticket": "OPS-1"}')
    page.get_by_label("dpi (--dpi)", exact=True).fill("1.5")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("dpi “1.5” is not a whole number")
    expect(page.get_by_label("dpi (--dpi)", exact=True)).to_be_focused()
    expect(page.get_by_label("dpi (--dpi)", exact=True)).to_have_attribute("aria-invalid", "true")
    page.get_by_label("dpi (--dpi)", exact=True).fill("")

    # Refused by the server: the field it names is marked.
    page.get_by_role("button", name="Run", exact=True).click()
    output = page.get_by_label("output (--output)", exact=True)
    expect(page.get_by_role("alert")).to_contain_text(
        "The run was refused: args.output: may not contain '..'"
    )
    expect(output).to_have_attribute("aria-invalid", "true")
    expect(output).to_be_focused()
    expect(page.locator("#arg-output-error")).to_contain_text("output: may not contain '..'")
    assert page.url.endswith("#/run/visualize/heatmap")

    output.fill("typed.png")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_role("heading", name="visualize heatmap", level=1)).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    with dashboard_api.client() as api:
        job = api.get(f"/jobs/{page.locator('#job-id').inner_text()}").json()
    assert job["args"] == {
        "input": job["args"]["input"],
        "output": "typed.png",
        "extent": [-180, 180, -90, 90],
        "width": 300,
        "legend_orientation": "vertical",
        "label": "  spaced label ",
        "no_coastline": True,
        "no_borders": True,
    }
    assert job["metadata"] == {"ticket": "OPS-1"}
    assert job["args"]["input"].startswith("file_id:")
    assert len(uploads) == 1  # uploaded once, though sent twice (the first was refused)
    expect(page.locator("#job-metadata")).to_contain_text('"ticket": "OPS-1"')
    assert tab.problems == []


def test_the_jobs_list_follows_status_changes_and_filters(
    tab: Tab, dashboard_api: ApiServer, blocker: str
) -> None:
    page = tab.page
    tab.sign_in()
    row = page.locator(f'[data-job-id="{blocker}"]')
    expect(row).to_contain_text("acquire http")
    expect(row).to_contain_text("running")
    page.get_by_label("Status").select_option("running")
    expect(page.locator("#job-list li")).to_have_count(1)
    assert "status=running" in page.url
    page.get_by_label("Stage").select_option("visualize")
    expect(page.locator("#jobs-summary")).to_have_text("No jobs match.")
    page.get_by_label("Stage").select_option("acquire")
    page.get_by_label("Command").select_option("http")
    expect(row).to_be_visible()
    page.get_by_label("Status").select_option("")

    with dashboard_api.client() as api:
        api.delete(f"/jobs/{blocker}")
    expect(row).to_contain_text("cancelled", timeout=20_000)  # the next refresh, no reload
    expect(page.locator("#announcer")).to_contain_text("running → cancelled")
    assert tab.problems == []


def test_a_job_is_cancelled_from_its_page_after_confirmation(
    tab: Tab, dashboard_api: ApiServer, blocker: str
) -> None:
    page = tab.page
    tab.sign_in()
    page.goto(f"{dashboard_api.url}/ui#/jobs/{blocker}")
    expect(page.locator("#job-status")).to_have_text("running")
    dialog = page.get_by_role("dialog", name="Cancel this job?")

    page.get_by_role("button", name="Cancel job").click()
    expect(dialog).to_be_visible()
    expect(page.get_by_role("button", name="Keep it running")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel job")).to_be_focused()
    with dashboard_api.client() as api:
        assert api.get(f"/jobs/{blocker}").json()["status"] == "running"

        page.get_by_role("button", name="Cancel job").click()
        page.get_by_role("button", name="Cancel the job").click()
        expect(page.locator("#job-status")).to_have_text("cancelled", timeout=30_000)
        assert api.get(f"/jobs/{blocker}").json()["status"] == "cancelled"
    expect(page.locator("#job-reason")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    assert tab.problems == []


def test_markup_in_a_jobs_arguments_metadata_and_stderr_is_shown_as_text(
    tab: Tab, dashboard_api: ApiServer
) -> None:
    image = '<img src=x onerror="window.pwned=1;alert(1)">'
    script = "<script>window.pwned=2;alert(2)</script>"
    with dashboard_api.client() as api:
        job_id = submit(
            api, "visualize", "heatmap",
            {"input": f"missing{script}.npy", "label": image, "output": "x.png"},
            metadata={"note": script, image: [image, {"deep": script}]},
        )  # fmt: skip
        job = wait_finished(api, job_id)
    assert script in job["stderr"]  # the command's own error names the file

    page = tab.page
    tab.sign_in()
    expect(page.locator(f'[data-job-id="{job_id}"]')).to_be_visible()
    page.goto(f"{dashboard_api.url}/ui#/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-args")).to_contain_text(image.replace('"', '\\"'))
    expect(page.locator("#job-args")).to_contain_text(script)
    expect(page.locator("#job-metadata")).to_contain_text(script)
    expect(page.locator("#job-log")).to_contain_text(script)
    for shown in ("#job-args", "#job-metadata", "#job-log"):
        assert page.locator(f"{shown} *:not(span)").count() == 0  # text, no elements
    assert page.locator("img[src='x'], #main script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert tab.problems == []  # no alert dialog, no uncaught error, no CSP refusal


def test_a_wrong_key_gets_a_clear_sign_in_error_and_sign_out_forgets_the_key(
    tab: Tab, dashboard_api: ApiServer
) -> None:
    page = tab.page
    tab.sign_in("not-the-key")
    assert not re.search(r"\b(null|undefined)\b", page.locator("#main").inner_text())
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Sign-in failed: the server refused it: invalid API key")
    expect(page.get_by_label("API key or token")).to_be_focused()
    expect(page.get_by_label("API key or token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("navigation")).to_be_hidden()
    assert tab.credential_kept() is None

    page.get_by_label("API key or token").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    expect(alert).to_be_hidden()
    assert tab.credential_kept() is not None
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    tab.sign_in(RUN_ONLY_KEY)
    expect(alert).to_contain_text("Sign-in failed: it cannot read jobs: missing scope read")
    assert tab.credential_kept() is None
    tab.sign_in(API_KEY)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    # Shown on the page and, 50 ms later, said to screen readers: the two are asserted apart,
    # so the check does not depend on which of them the text is found in first.
    expect(page.locator("#main").get_by_text("You have signed out.")).to_be_visible()
    expect(page.locator("#announcer")).to_have_text("You have signed out.")
    assert tab.credential_kept() is None
    assert tab.problems == []


@pytest.mark.parametrize(
    ("key", "kind", "way"),
    [
        (API_KEY, "api_key", "websocket"),
        (API_KEY, "bearer", "websocket"),  # an API key as `Authorization: Bearer`
        ("a JWT", "bearer", "websocket"),
        (SLASHED_KEY, "api_key", "sse"),
    ],
)
def test_the_live_stream_carries_the_credential_in_a_subprotocol_or_header_never_the_url(
    tab: Tab, dashboard_api: ApiServer, issuer: LoopbackIssuer, key: str, kind: str, way: str
) -> None:
    if key == "a JWT":
        key = issuer.token("rsa-1")
    header = {"Authorization": f"Bearer {key}"} if kind == "bearer" else {"X-API-Key": key}
    with httpx.Client(base_url=dashboard_api.url, headers=header, timeout=60) as api:
        job_id = submit(api, "visualize", "heatmap", {"input": "missing.npy", "output": "x.png"})
        wait_finished(api, job_id)
    page = tab.page
    sockets: list[str] = []
    requests: list[tuple[str, dict[str, str]]] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.on("request", lambda request: requests.append((request.url, request.headers)))

    tab.sign_in(key, kind)
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    page.goto(f"{dashboard_api.url}/ui#/jobs/{job_id}")
    expect(page.locator("#job-log")).to_contain_text("FileNotFoundError")
    expect(page.locator("#job-stream-state")).to_have_text("The job has ended.")

    events = [(url, headers) for url, headers in requests if f"/jobs/{job_id}/events" in url]
    if way == "websocket":
        assert [url.split("?")[0] for url in sockets] == [
            f"{dashboard_api.url.replace('http', 'ws')}/ws/jobs/{job_id}"
        ]
        assert events == []
    else:
        assert sockets == []
        [(url, headers)] = events
        assert headers["x-api-key"] == SLASHED_KEY
    for url in [*sockets, *(url for url, _ in requests)]:
        assert key not in url and "api_key" not in url and "access_token" not in url
    api_calls = [headers for url, headers in requests if "/ui" not in url]
    header = "authorization" if kind == "bearer" else "x-api-key"
    assert api_calls and all(header in headers for headers in api_calls)
    assert tab.problems == []


def test_another_principals_job_is_not_listed_nor_shown(tab: Tab, dashboard_api: ApiServer) -> None:
    args = {"input": "missing.npy", "output": "x.png"}
    with dashboard_api.client(OTHER_KEY) as other, dashboard_api.client() as mine:
        theirs = submit(other, "visualize", "heatmap", args)
        ours = submit(mine, "visualize", "heatmap", args)
        wait_finished(other, theirs)
        wait_finished(mine, ours)

    page = tab.page
    tab.sign_in()
    expect(page.locator(f'[data-job-id="{ours}"]')).to_be_visible()
    expect(page.locator(f'[data-job-id="{theirs}"]')).to_have_count(0)
    assert not page.get_by_text("by other").count()
    page.goto(f"{dashboard_api.url}/ui#/jobs/{theirs}")
    expect(page.get_by_role("heading", name="No such job", level=1)).to_be_visible()
    expect(page.get_by_text(f"There is no job {theirs} of yours.")).to_be_visible()
    assert tab.problems == []


def test_keyboard_only_sign_in_and_run_with_every_control_named(
    tab: Tab, dashboard_api: ApiServer, inputs: Path
) -> None:
    page = tab.page
    keys = page.keyboard
    page.goto(f"{dashboard_api.url}/ui")

    def active() -> dict:
        return page.evaluate("""() => {
          const e = document.activeElement, style = getComputedStyle(e);
          return {id: e.id, tag: e.tagName, text: e.textContent.trim(),
                  outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
        }""")

    def tab_to(wanted: str, backwards: bool = False, limit: int = 200) -> None:
        for _ in range(limit):
            keys.press("Shift+Tab" if backwards else "Tab")
            focused = active()
            assert focused["outline"] != "none" and focused["width"] >= 2, focused  # visible
            if wanted in (focused["id"], focused["text"]):
                return
        raise AssertionError(f"Tab never reached {wanted}")

    assert_named(page)
    tab_to("signin-secret")
    keys.type(API_KEY)
    keys.press("Enter")
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_focused()
    assert_named(page)

    tab_to("Run a command", backwards=True)
    keys.press("Enter")
    expect(page.get_by_role("heading", name="Run a command", level=1)).to_be_focused()
    tab_to("run-stage")
    keys.type("visualize")  # a closed select picks the option typed
    tab_to("run-command")
    keys.type("heatmap")
    expect(page.locator("#arg-no_gridlines")).to_be_visible()
    assert_named(page)

    typed = {"arg-input": str(inputs / "field.npy"), "arg-output": "keyboard.png"}
    flags = {"arg-no_coastline", "arg-no_borders", "arg-no_gridlines"}
    visited: list[str] = []
    for _ in range(300):
        keys.press("Tab")
        focused = active()
        assert focused["outline"] != "none" and focused["width"] >= 2, focused
        visited.append(focused["id"])
        if focused["id"] in typed:
            keys.type(typed[focused["id"]])
        elif focused["id"] in flags:
            keys.press("Space")
        elif focused["id"] == "run-submit":
            break
    reachable = page.eval_on_selector_all(
        "#run-form input, #run-form select, #run-form textarea, #run-form button",
        "elements => elements.map(e => e.id)",
    )
    assert set(reachable) - {"run-stage", "run-command"} <= set(visited)  # all in Tab order
    for flag in flags:
        expect(page.locator(f"#{flag}")).to_be_checked()

    page.set_viewport_size({"width": 320, "height": 800})
    assert fits(page, 320), "the run form scrolls sideways at 320 px"
    keys.press("Enter")  # on the Run button
    expect(page.get_by_role("heading", name="visualize heatmap", level=1)).to_be_focused()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=120_000)
    with dashboard_api.client() as api:
        job_id = page.locator("#job-id").inner_text()
        job = api.get(f"/jobs/{job_id}").json()
    assert job["args"] == {
        "input": str(inputs / "field.npy"), "output": "keyboard.png",
        "no_coastline": True, "no_borders": True, "no_gridlines": True,
    }  # fmt: skip
    assert_named(page)
    assert tab.problems == []


def assert_named(page: Page) -> None:
    """Every visible control of the page has an accessible name, and no two share one."""
    controls = page.locator(CONTROLS)
    visible = [controls.nth(i) for i in range(controls.count()) if controls.nth(i).is_visible()]
    assert visible, "no controls found"
    for control in visible:
        expect(control).to_have_accessible_name(re.compile(r"\S"))
    named = []
    for line in page.locator("#main").aria_snapshot().splitlines():
        # YAML: a line is quoted when the name holds a colon.
        if re.match(r"\s*- '?(textbox|checkbox|combobox|listbox|spinbutton|button)\b", line):
            role_and_name = re.match(r'\s*- \'?(\w+ "[^"]+")', line)
            assert role_and_name, f"unnamed: {line}"
            named.append(role_and_name[1])
    assert len(named) == len(set(named)), f"names used twice: {sorted(named)}"
