// One job: status, progress, exit code, its log live from the event stream, outputs to
// download (fetched with the credential, then saved from a blob URL), cancel, and its
// arguments and metadata (shown as text: they are whatever the submitter sent).

import { fetchOutput, request, saveBlob } from "./api.js";
import { announce, clear, facts, h, showAlert, statusBadge, when } from "./dom.js";
import { followJob } from "./stream.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
// A stream replays the job's history first: a status only ever moves forward.
const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };
const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
const PREVIEW_MAX_BYTES = 4 << 20;
const LOG_MAX_CHARS = 2_000_000; // the page keeps this much; the API keeps it all
const POLL_MS = 3000;

function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1 << 20) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / (1 << 20)).toFixed(1)} MiB`;
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

/** Render job `jobId` into `main`; answers a function that tears it down. */
export function renderJob(main, jobId) {
  let stopped = false;
  let stream = null;
  let pollTimer = null;
  let job = null;
  let logChars = 0;
  let logCapped = false;
  const previews = [];

  const heading = h("h1", { tabindex: "-1" }, "Job");
  const loading = h("p", {}, "Loading…");
  main.append(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), heading, loading);

  // Filled once the job is known.
  const statusValue = h("span", { id: "job-status" });
  const progressBar = h("progress", { id: "job-progress", max: "1", value: "0",
                                      "aria-labelledby": "job-progress-label" });
  const progressText = h("span", { id: "job-progress-text" });
  const exitCode = h("span", { id: "job-exit-code" });
  const reason = h("span", { id: "job-reason" });
  const duration = h("span", { id: "job-duration" });
  const started = h("span", { id: "job-started" });
  const finished = h("span", { id: "job-finished" });
  const cancelButton = h("button", { type: "button", id: "job-cancel", class: "danger" }, "Cancel job");
  const log = h("pre", { id: "job-log", class: "log", tabindex: "0", role: "log",
                         "aria-live": "off", "aria-labelledby": "log-heading" });
  const logNote = h("p", { id: "job-log-note", class: "help" }, "Waiting for output…");
  const streamState = h("p", { id: "job-stream-state", class: "help" });
  const outputs = h("div", { id: "job-outputs" });
  const args = h("pre", { id: "job-args", class: "data", tabindex: "0", "aria-labelledby": "args-heading" });
  const metadata = h("pre", { id: "job-metadata", class: "data", tabindex: "0",
                              "aria-labelledby": "metadata-heading" });

  function appendLog(text, stream_) {
    if (logCapped || !text) return;
    let piece = text;
    if (logChars + piece.length > LOG_MAX_CHARS) {
      piece = piece.slice(0, LOG_MAX_CHARS - logChars);
      logCapped = true;
    }
    logChars += piece.length;
    log.append(h("span", { class: stream_ === "stderr" ? "stderr" : "stdout" }, piece));
    if (logCapped) {
      log.append(h("span", { class: "note" }, "\n[the page shows no more: the job's record has it all]"));
    }
    logNote.textContent = "";
    // Follow the end unless the reader has scrolled up.
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 80) log.scrollTop = log.scrollHeight;
  }

  function showStatus(next) {
    statusValue.replaceChildren(statusBadge(next));
    cancelButton.hidden = TERMINAL.has(next);
  }

  function showProgress(value) {
    const fraction = Math.max(0, Math.min(1, Number(value) || 0));
    progressBar.value = fraction;
    progressText.textContent = `${Math.round(fraction * 100)} %`;
  }

  function showNumbers(view) {
    exitCode.textContent = view.exit_code ?? "—";
    reason.textContent = view.reason ?? "—";
    duration.textContent = view.duration_s === null || view.duration_s === undefined
      ? "—" : `${view.duration_s.toFixed(2)} s`;
    started.textContent = when(view.started_at);
    finished.textContent = when(view.finished_at);
  }

  async function download(file, button) {
    button.disabled = true;
    showAlert("");
    try {
      const { blob, name } = await fetchOutput(jobId, file);
      saveBlob(blob, name);
      announce(`Downloaded ${name}`);
    } catch (error) {
      showAlert(`The download failed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async function preview(output, holder) {
    try {
      const { blob } = await fetchOutput(jobId, output.name);
      if (stopped) return;
      const url = URL.createObjectURL(blob);
      previews.push(url);
      holder.replaceChildren(h("img", { src: url, alt: `Preview of ${output.name}`, class: "preview" }));
    } catch (error) {
      holder.textContent = `No preview: ${error.message}`;
    }
  }

  function showOutputs(view) {
    clear(outputs);
    if (!view.outputs.length) {
      outputs.append(h("p", {}, TERMINAL.has(view.status) ? "No outputs." : "None yet."));
      return;
    }
    if (view.outputs_expired_at) {
      outputs.append(h("p", { class: "help" },
        `The outputs left storage at ${when(view.outputs_expired_at)}: they can no longer be downloaded.`));
    }
    const list = h("ul", { class: "outputs" });
    for (const output of view.outputs) {
      const button = h("button", { type: "button", class: "download" }, `Download ${output.name}`);
      button.addEventListener("click", () => download(output.name, button));
      button.disabled = Boolean(view.outputs_expired_at);
      const holder = h("div", { class: "preview-holder" });
      list.append(h("li", {},
        h("p", {}, h("span", { class: "output-name" }, output.name), ` — ${bytes(output.size)}`),
        h("p", { class: "help sha" }, `sha256 ${output.sha256}`),
        button, holder));
      if (!view.outputs_expired_at && IMAGE.test(output.name) && output.size <= PREVIEW_MAX_BYTES) {
        preview(output, holder);
      }
    }
    outputs.append(list);
    if (view.outputs.length > 1 && !view.outputs_expired_at) {
      const all = h("button", { type: "button", class: "download" }, "Download all as a zip");
      all.addEventListener("click", () => download(null, all));
      outputs.append(all);
    }
  }

  function showJob(view) {
    job = view;
    heading.textContent = `${view.stage} ${view.command}`;
    document.title = `${view.stage} ${view.command} · Zyra orchestrator`;
    showStatus(view.status);
    showProgress(view.status === "succeeded" ? 1 : view.progress);
    showNumbers(view);
    showOutputs(view);
    args.textContent = json(view.args);
    metadata.textContent = view.metadata === null ? "none" : json(view.metadata);
  }

  function layout(view) {
    loading.remove();
    main.append(
      h("p", { class: "help" }, "Job ", h("code", { id: "job-id" }, view.job_id)),
      h("section", { "aria-labelledby": "status-heading" },
        h("h2", { id: "status-heading" }, "Status"),
        facts([
          ["Status", statusValue],
          [h("span", { id: "job-progress-label" }, "Progress"), [progressBar, " ", progressText]],
          ["Exit code", exitCode],
          ["Reason", reason],
          ["Duration", duration],
          ["Submitted", `${when(view.created_at)} by ${view.submitted_by}`],
          ["Owner", view.owner],
          ["Started", started],
          ["Finished", finished],
        ]),
        h("div", { class: "actions" }, cancelButton)),
      h("section", { "aria-labelledby": "log-heading" },
        h("h2", { id: "log-heading" }, "Log"), streamState, log, logNote),
      h("section", { "aria-labelledby": "outputs-heading" },
        h("h2", { id: "outputs-heading" }, "Outputs"), outputs),
      h("section", { "aria-labelledby": "args-heading" },
        h("h2", { id: "args-heading" }, "Arguments"), args),
      h("section", { "aria-labelledby": "metadata-heading" },
        h("h2", { id: "metadata-heading" }, "Metadata"), metadata));
    showJob(view);
  }

  async function reload() {
    const view = await request(`/jobs/${encodeURIComponent(jobId)}`);
    if (!stopped) showJob(view);
    return view;
  }

  function fillLogFromRecord(view) {
    // The events may have expired (or been capped); the record keeps the text.
    if (logChars === 0) {
      appendLog(view.stdout_is_binary ? "" : view.stdout, "stdout");
      appendLog(view.stderr, "stderr");
    }
    const cut = [view.stdout_truncated && "stdout", view.stderr_truncated && "stderr"].filter(Boolean);
    logNote.textContent = cut.length ? `The server cut ${cut.join(" and ")} at its log limit.` : "";
    if (logChars === 0) logNote.textContent = "No output.";
    if (view.stdout_is_binary) logNote.textContent += " stdout was binary: it is an output.";
  }

  function poll() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(async () => {
      try {
        const view = await reload();
        if (TERMINAL.has(view.status)) fillLogFromRecord(view);
        else poll();
      } catch (error) {
        if (!stopped) streamState.textContent = `Updates stopped: ${error.message}`;
      }
    }, POLL_MS);
  }

  function follow() {
    streamState.textContent = "Following the job live.";
    stream = followJob(jobId, {
      onEvent(event) {
        if (event.stdout !== undefined) appendLog(event.stdout, "stdout");
        if (event.stderr !== undefined) appendLog(event.stderr, "stderr");
        if (TERMINAL.has(job.status)) return; // history: the record already says how it ended
        if (event.progress !== undefined) showProgress(event.progress);
        if (event.exit_code !== undefined) exitCode.textContent = event.exit_code;
        if (event.reason !== undefined) reason.textContent = event.reason;
        if (event.status !== undefined && (RANK[event.status] ?? 0) > (RANK[job.status] ?? 0)) {
          job = { ...job, status: event.status };
          showStatus(event.status);
          announce(`Job status: ${event.status}`);
        }
      },
      async onEnd() {
        streamState.textContent = "The job has ended.";
        try {
          fillLogFromRecord(await reload());
        } catch (error) {
          showAlert(`The job could not be reloaded: ${error.message}`);
        }
      },
      onProblem(message, fatal) {
        streamState.textContent = fatal
          ? `Live updates stopped (${message}); checking every few seconds instead.`
          : `Live updates interrupted: ${message}.`;
        if (fatal && !stopped) poll();
      },
    });
  }

  cancelButton.addEventListener("click", () => {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent =
      `${job.stage} ${job.command} (job ${job.job_id}) gets SIGTERM now and SIGKILL after the ` +
      "grace period. This cannot be undone.";
    dialog.returnValue = "";
    dialog.addEventListener("close", async () => {
      cancelButton.focus();
      if (dialog.returnValue !== "confirm") return;
      try {
        const answer = await request(`/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
        announce(answer.message);
        streamState.textContent = answer.message;
        if (!stream) await reload();
      } catch (error) {
        showAlert(`The job could not be cancelled: ${error.message}`);
      }
    }, { once: true });
    dialog.showModal();
  });

  request(`/jobs/${encodeURIComponent(jobId)}`).then((view) => {
    if (stopped) return;
    layout(view);
    heading.focus();
    follow();
  }).catch((error) => {
    if (stopped) return;
    heading.textContent = error.status === 404 ? "No such job" : "Job";
    loading.textContent = error.status === 404
      ? `There is no job ${jobId} of yours.`
      : `The job could not be loaded: ${error.message}`;
  });

  return () => {
    stopped = true;
    const dialog = document.getElementById("confirm");
    if (dialog.open) dialog.close(); // left by Back: it must not cancel a job no longer shown
    stream?.stop();
    clearTimeout(pollTimer);
    for (const url of previews) URL.revokeObjectURL(url);
  };
}
