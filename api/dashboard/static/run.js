// "Run a command": a stage and command from the catalog, a field per argument from its
// JSON Schema; files chosen are uploaded first (`POST /upload` -> `file_id:<id>`), then the
// run is submitted async and the page goes to the job.

import { ApiError, catalog, request, upload } from "./api.js";
import { announce, clear, h, showAlert } from "./dom.js";
import { argumentForm } from "./schema-form.js";

function routeTo(stage, command) {
  const parts = ["#/run", stage, command].filter(Boolean).map((p, i) => (i ? encodeURIComponent(p) : p));
  history.replaceState(null, "", parts.join("/"));
}

function selectField(id, labelText, options, value) {
  const select = h("select", { id, name: id });
  select.append(...options.map(([optionValue, text]) => h("option", { value: optionValue }, text)));
  select.value = value ?? "";
  return { select, element: h("div", { class: "field" }, h("label", { for: id }, labelText), select) };
}

/** Render the run form into `main`; answers a function that tears it down. */
export function renderRun(main, { stage: wantedStage, command: wantedCommand }) {
  const controller = new AbortController();
  const heading = h("h1", { tabindex: "-1" }, "Run a command");
  const status = h("p", {}, "Loading the command catalog…");
  main.append(heading, status);

  catalog().then((answer) => {
    if (controller.signal.aborted) return;
    status.remove();
    build(main, answer, wantedStage, wantedCommand, controller.signal);
  }).catch((error) => {
    if (controller.signal.aborted) return;
    status.textContent = `The catalog could not be loaded: ${error.message}`;
  });
  return () => controller.abort();
}

function build(main, answer, wantedStage, wantedCommand, signal) {
  const stages = answer.stages || {};
  const stageNames = Object.keys(stages);
  const stage = stageNames.includes(wantedStage) ? wantedStage : "";
  const stageField = selectField("run-stage", "Stage",
    [["", "Choose a stage"], ...stageNames.map((s) => [s, s])], stage);
  const commandField = selectField("run-command", "Command", [["", "Choose a stage first"]], "");
  const description = h("p", { id: "run-description", class: "help", "aria-live": "polite" });
  const argsHolder = h("div", { id: "run-args" });
  const timeout = h("input", {
    id: "run-timeout", name: "timeout_s", type: "number", min: "1", step: "any",
    inputmode: "decimal", placeholder: "the server's default", "aria-describedby": "run-timeout-help",
  });
  const metadata = h("textarea", {
    id: "run-metadata", name: "metadata", rows: 3, spellcheck: "false",
    placeholder: '{"ticket": "OPS-1"}', "aria-describedby": "run-metadata-help run-metadata-error",
  });
  const metadataError = h("p", { id: "run-metadata-error", class: "field-error", hidden: true });
  const submit = h("button", { type: "submit", id: "run-submit", disabled: true }, "Run");
  const progress = h("p", { id: "run-progress", class: "help" });
  let argsForm = null;
  const uploaded = new WeakMap(); // File -> file_id: a run refused and sent again uploads once

  const formElement = h("form", { id: "run-form", novalidate: true, "aria-labelledby": "run-heading" },
    h("h2", { id: "run-heading", class: "visually-hidden" }, "Command and arguments"),
    h("fieldset", { class: "arg-group" }, h("legend", {}, "Command"),
      stageField.element, commandField.element, description),
    argsHolder,
    h("fieldset", { class: "arg-group" }, h("legend", {}, "Run options"),
      h("div", { class: "field" }, h("label", { for: "run-timeout" }, "Timeout in seconds"), timeout,
        h("p", { class: "help", id: "run-timeout-help" },
          "Optional; the command is killed after it (at most the server's limit).")),
      h("div", { class: "field" }, h("label", { for: "run-metadata" }, "Metadata, a JSON object"),
        metadata,
        h("p", { class: "help", id: "run-metadata-help" },
          "Optional; shown with the job and sent in its callback."),
        metadataError)),
    h("div", { class: "actions" }, submit),
    progress);
  main.append(formElement);

  function showCommands(chosenStage, chosenCommand) {
    const commands = chosenStage ? Object.keys(stages[chosenStage].commands) : [];
    clear(commandField.select);
    commandField.select.append(
      h("option", { value: "" }, chosenStage ? "Choose a command" : "Choose a stage first"),
      ...commands.map((c) => h("option", { value: c }, c)));
    commandField.select.disabled = !chosenStage;
    commandField.select.value = commands.includes(chosenCommand) ? chosenCommand : "";
    showArguments();
  }

  function showArguments() {
    const chosenStage = stageField.select.value;
    const chosenCommand = commandField.select.value;
    clear(argsHolder);
    argsForm = null;
    submit.disabled = !chosenCommand;
    routeTo(chosenStage, chosenCommand);
    if (!chosenCommand) {
      description.textContent = "";
      return;
    }
    const spec = stages[chosenStage].commands[chosenCommand];
    description.textContent = `${chosenStage} ${chosenCommand}: ${spec.description || "no description"}`;
    argsForm = argumentForm(spec.schema);
    argsHolder.append(argsForm.element);
  }

  stageField.select.addEventListener("change", () => showCommands(stageField.select.value, ""));
  commandField.select.addEventListener("change", showArguments);
  showCommands(stage, wantedCommand);

  formElement.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!argsForm || submit.disabled) return;
    showAlert("");
    const { args, uploads, problems } = argsForm.read();
    const body = { stage: stageField.select.value, command: commandField.select.value, args, mode: "async" };
    metadataError.hidden = true;
    metadata.removeAttribute("aria-invalid");
    if (metadata.value.trim()) {
      try {
        body.metadata = JSON.parse(metadata.value);
        if (!body.metadata || typeof body.metadata !== "object" || Array.isArray(body.metadata)) {
          throw new Error("not an object");
        }
      } catch (error) {
        metadataError.textContent = `Metadata must be a JSON object (${error.message})`;
        metadataError.hidden = false;
        metadata.setAttribute("aria-invalid", "true");
        problems.push({ field: { focus: () => metadata.focus() }, message: metadataError.textContent });
      }
    }
    if (timeout.value.trim()) body.timeout_s = Number(timeout.value);
    if (problems.length) {
      argsForm.showProblems(problems.filter((p) => p.field.setError));
      showAlert(`Please correct: ${problems.map((p) => p.message).join("; ")}`);
      problems[0].field.focus();
      return;
    }
    submit.disabled = true;
    try {
      const total = uploads.reduce((n, u) => n + u.files.length, 0);
      let done = 0;
      for (const item of uploads) {
        const refs = [];
        for (const file of item.files) {
          done += 1;
          if (!uploaded.has(file)) {
            progress.textContent = `Uploading ${file.name} (${done} of ${total})…`;
            announce(progress.textContent);
            uploaded.set(file, (await upload(file, signal)).file_id);
          }
          refs.push(`file_id:${uploaded.get(file)}`);
        }
        args[item.name] = item.array ? [...refs, ...(item.typed || [])] : refs[0];
      }
      progress.textContent = "Submitting…";
      const accepted = await request("/cli/run", { method: "POST", json: body, signal });
      announce(`Job ${accepted.job_id} submitted`);
      location.hash = `#/jobs/${encodeURIComponent(accepted.job_id)}`;
    } catch (error) {
      if (signal.aborted) return;
      progress.textContent = "";
      submit.disabled = false;
      if (error instanceof ApiError && error.status === 422 && Array.isArray(error.body?.detail)) {
        const named = [];
        for (const problem of error.body.detail) {
          const loc = problem.loc || [];
          const field = loc[1] === "args" ? argsForm.fieldNamed(String(loc[2])) : null;
          if (field) named.push({ field, message: `${field.name}: ${problem.msg}` });
        }
        argsForm.showProblems(named);
        named[0]?.field.focus();
      }
      showAlert(`The run was refused: ${error.message}`);
    }
  });
}
