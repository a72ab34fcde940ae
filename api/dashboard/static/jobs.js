// The jobs list (`GET /jobs`, newest first) with the filters the API takes (status,
// stage, command), refreshed every few seconds while the tab is visible; status changes
// are announced. Rows are updated in place, so focus and scroll stay where they were.

import { catalog, request } from "./api.js";
import { announce, clear, h, statusBadge, when } from "./dom.js";

const REFRESH_MS = 4000;
const PAGE = 25;
const MAX_LIMIT = 500; // the API's own maximum
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

function shortId(jobId) {
  return String(jobId).slice(0, 8);
}

function selectField(id, labelText, options, value) {
  const select = h("select", { id, name: id.replace("filter-", "") });
  select.append(...options.map(([v, text]) => h("option", { value: v }, text)));
  select.value = value || "";
  return { select, element: h("div", { class: "field" }, h("label", { for: id }, labelText), select) };
}

function jobRow(job) {
  const status = h("span", { class: "job-status" });
  const progress = h("span", { class: "job-progress" });
  const link = h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}`, class: "job-link" });
  const row = h("li", { class: "job-card", "data-job-id": job.job_id },
    h("p", { class: "job-title" }, link, " ", status, " ", progress),
    h("p", { class: "job-meta" }));
  row.update = (next) => {
    link.textContent = `${next.stage} ${next.command} · ${shortId(next.job_id)}`;
    status.replaceChildren(statusBadge(next.status));
    progress.textContent = next.status === "running" ? `${Math.round(next.progress * 100)} %` : "";
    row.querySelector(".job-meta").textContent =
      `Submitted ${when(next.created_at)} by ${next.submitted_by}` +
      (next.exit_code === null || next.exit_code === undefined ? "" : ` · exit code ${next.exit_code}`);
  };
  row.update(job);
  return row;
}

/** Render the list into `main`; answers a function that tears it down. */
export function renderJobs(main, query) {
  const filters = {
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "",
    stage: query.get("stage") || "",
    command: query.get("command") || "",
  };
  let limit = PAGE;
  let timer = null;
  let stopped = false;
  let inFlight = null;
  const rows = new Map(); // job id -> row
  const statuses = new Map(); // job id -> last status seen

  const status = selectField("filter-status", "Status",
    [["", "Any status"], ...STATUSES.map((s) => [s, s])], filters.status);
  const stage = selectField("filter-stage", "Stage", [["", "Any stage"]], "");
  const command = selectField("filter-command", "Command", [["", "Any command"]], "");
  const list = h("ol", { id: "job-list", class: "job-list", "aria-labelledby": "jobs-heading" });
  const summary = h("p", { id: "jobs-summary", class: "help" }, "Loading…");
  const more = h("button", { type: "button", id: "jobs-more", hidden: true }, "Show more jobs");

  main.append(
    h("h1", { id: "jobs-heading", tabindex: "-1" }, "Jobs"),
    h("form", { class: "filters", role: "search", "aria-label": "Filter jobs",
                on: { submit: (e) => e.preventDefault() } },
      status.element, stage.element, command.element),
    summary, list, more);

  let stages = {};
  function fillCommands() {
    const names = filters.stage
      ? Object.keys(stages[filters.stage]?.commands || {})
      : [...new Set(Object.values(stages).flatMap((s) => Object.keys(s.commands)))].sort();
    if (filters.command && !names.includes(filters.command)) names.unshift(filters.command);
    clear(command.select);
    command.select.append(h("option", { value: "" }, "Any command"),
      ...names.map((n) => h("option", { value: n }, n)));
    command.select.value = filters.command;
  }
  function fillStages() {
    const names = Object.keys(stages);
    if (filters.stage && !names.includes(filters.stage)) names.unshift(filters.stage);
    clear(stage.select);
    stage.select.append(h("option", { value: "" }, "Any stage"),
      ...names.map((n) => h("option", { value: n }, n)));
    stage.select.value = filters.stage;
    fillCommands();
  }
  fillStages();
  catalog().then((answer) => {
    stages = answer.stages || {};
    if (!stopped) fillStages();
  }).catch(() => {}); // the list itself reports a refused credential

  function keepInUrl() {
    const params = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const text = params.toString();
    history.replaceState(null, "", `#/jobs${text ? `?${text}` : ""}`);
  }

  function show(page) {
    const seen = new Set(page.jobs.map((job) => job.job_id));
    const changes = [];
    for (const [jobId, row] of rows) {
      if (!seen.has(jobId)) {
        row.remove();
        rows.delete(jobId);
        statuses.delete(jobId);
      }
    }
    page.jobs.forEach((job, index) => {
      let row = rows.get(job.job_id);
      if (row) {
        row.update(job);
      } else {
        row = jobRow(job);
        rows.set(job.job_id, row);
      }
      const before = statuses.get(job.job_id);
      if (before && before !== job.status) {
        changes.push(`${job.stage} ${job.command} ${shortId(job.job_id)}: ${before} → ${job.status}`);
      }
      statuses.set(job.job_id, job.status);
      // Moved only when out of place: moving a focused link would drop its focus.
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] || null);
    });
    const count = page.jobs.length;
    summary.textContent = count
      ? `${count} job${count === 1 ? "" : "s"}, newest first; updated ${new Date().toLocaleTimeString()}.`
      : "No jobs match.";
    more.hidden = !page.next_cursor || limit >= MAX_LIMIT;
    if (changes.length) announce(changes.join(". "));
  }

  async function refresh() {
    clearTimeout(timer);
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    try {
      const page = await request("/jobs", {
        query: { ...filters, limit }, signal: controller.signal,
      });
      if (!stopped && inFlight === controller) show(page);
    } catch (error) {
      if (controller.signal.aborted || stopped) return;
      summary.textContent = `The jobs could not be loaded: ${error.message}`;
      if (error.status === 401) return; // back to sign-in
    }
    if (!stopped && inFlight === controller) timer = setTimeout(tick, REFRESH_MS);
  }
  function tick() {
    if (document.visibilityState === "visible") refresh();
    else timer = setTimeout(tick, REFRESH_MS);
  }

  function filterChanged(name, select) {
    filters[name] = select.value;
    if (name === "stage") {
      filters.command = "";
      fillCommands();
    }
    keepInUrl();
    limit = PAGE;
    clear(list);
    rows.clear();
    statuses.clear();
    summary.textContent = "Loading…";
    refresh().then(() => announce(summary.textContent));
  }
  status.select.addEventListener("change", () => filterChanged("status", status.select));
  stage.select.addEventListener("change", () => filterChanged("stage", stage.select));
  command.select.addEventListener("change", () => filterChanged("command", command.select));
  more.addEventListener("click", () => {
    limit = Math.min(limit + PAGE, MAX_LIMIT);
    refresh();
  });
  const onVisible = () => document.visibilityState === "visible" && refresh();
  document.addEventListener("visibilitychange", onVisible);

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    inFlight?.abort();
    document.removeEventListener("visibilitychange", onVisible);
  };
}
