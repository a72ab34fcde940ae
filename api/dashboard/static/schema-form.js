// Form fields for one command's arguments, built from its JSON Schema
// (`GET /cli/commands`; runner/catalog.py writes it). Each argument's `x-zyra` says
// whether it is a file the command reads (`path: "input"`: upload it, or name a server
// path, URL or `file_id:`), a file it writes (`"output"`: a name in its folder), or a
// secret (a password field).

import { h } from "./dom.js";

const MULTI_LINE = "one per line";

function typesOf(schema) {
  return Array.isArray(schema.type) ? schema.type : [schema.type];
}

function describeDefault(schema) {
  return schema.default === undefined ? "" : `default: ${JSON.stringify(schema.default)}`;
}

/** The value typed for one item of `type`, or throws a message. */
function parseItem(text, type) {
  if (type === "integer" || type === "number") {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value)) throw `“${text}” is not a number`;
    if (type === "integer" && !Number.isInteger(value)) throw `“${text}” is not a whole number`;
    return value;
  }
  return text;
}

function checkCount(values, schema) {
  const { minItems: min, maxItems: max } = schema;
  if (min !== undefined && min === max && values.length !== min) {
    throw `needs exactly ${min} values (${MULTI_LINE}); got ${values.length}`;
  }
  if (min !== undefined && values.length < min) throw `needs at least ${min} values`;
  if (max !== undefined && values.length > max) throw `takes at most ${max} values`;
}

function lines(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean);
}

/**
 * One argument's field.
 * read(): {value} (undefined: not given), {files, value} for uploads, or throws a message.
 */
class ArgField {
  constructor(name, schema, required) {
    this.name = name;
    this.schema = schema;
    this.zyra = schema["x-zyra"] || {};
    this.required = required;
    this.id = `arg-${name}`;
    this.controls = [];
    this.errorText = h("p", { class: "field-error", id: `${this.id}-error`, hidden: true });
  }

  labelText(suffix = "") {
    const option = this.zyra.option || this.zyra.false_option;
    const how = option ? ` (${option})` : this.zyra.positional ? " (positional)" : "";
    return `${this.name}${how}${suffix}${this.required ? ", required" : ""}`;
  }

  describedBy() {
    return [this.schema.description ? `${this.id}-help` : null, `${this.id}-error`]
      .filter(Boolean).join(" ");
  }

  help() {
    const flagOff = this.schema.type === "boolean" && this.schema.default === false;
    const notes = [this.schema.description, flagOff ? "" : describeDefault(this.schema)]
      .filter(Boolean);
    return notes.length ? h("p", { class: "help", id: `${this.id}-help` }, notes.join(" — ")) : null;
  }

  control(tag, attrs) {
    const element = h(tag, { "aria-describedby": this.describedBy(), ...attrs });
    this.controls.push(element);
    return element;
  }

  setError(message) {
    this.errorText.textContent = message || "";
    this.errorText.hidden = !message;
    for (const control of this.controls) {
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    }
  }

  focus() {
    this.controls[0]?.focus();
  }
}

class FlagField extends ArgField {
  render() {
    this.box = this.control("input", {
      type: "checkbox", id: this.id, name: this.name, props: { checked: this.schema.default === true },
    });
    return h("div", { class: "field field-flag" },
      this.box, h("label", { for: this.id }, this.labelText()), this.help(), this.errorText);
  }

  read() {
    const fallback = this.schema.default === true;
    return { value: this.box.checked === fallback ? undefined : this.box.checked };
  }
}

class ChoiceField extends ArgField {
  render() {
    const array = typesOf(this.schema).includes("array");
    const choices = (array ? this.schema.items : this.schema).enum;
    this.itemType = typesOf(array ? this.schema.items : this.schema)[0];
    this.array = array;
    const options = choices.map((choice) => h("option", { value: String(choice) }, String(choice)));
    if (!array) {
      const unset = this.schema.default === undefined ? "(not set)" : `(default: ${this.schema.default})`;
      options.unshift(h("option", { value: "" }, unset));
    }
    this.select = this.control("select", {
      id: this.id, name: this.name, multiple: array, "aria-required": this.required ? "true" : null,
    });
    this.select.append(...options);
    return h("div", { class: "field" },
      h("label", { for: this.id }, this.labelText(array ? ", choose any" : "")),
      this.select, this.help(), this.errorText);
  }

  read() {
    const chosen = [...this.select.selectedOptions].map((o) => o.value).filter((v) => v !== "");
    const values = chosen.map((v) => parseItem(v, this.itemType));
    if (this.array) {
      if (values.length) checkCount(values, this.schema);
      return { value: values.length ? values : undefined };
    }
    return { value: values[0] };
  }
}

class TextField extends ArgField {
  render() {
    const types = typesOf(this.schema);
    this.array = types.includes("array");
    this.itemType = this.array ? typesOf(this.schema.items || {})[0] : types[0];
    this.object = types.includes("object");
    const numeric = this.itemType === "integer" || this.itemType === "number";
    const output = this.zyra.path === "output";
    let placeholder = describeDefault(this.schema);
    if (output) placeholder = this.array ? "file names, one per line" : "a file name, e.g. out.png";
    if (this.array && !output) placeholder = `${MULTI_LINE}${placeholder ? `; ${placeholder}` : ""}`;
    if (this.array || this.object) {
      this.input = this.control("textarea", {
        id: this.id, name: this.name, rows: 3, placeholder, spellcheck: "false",
        "aria-required": this.required ? "true" : null,
      });
    } else {
      const type = this.zyra.secret ? "password" : numeric ? "number" : "text";
      this.input = this.control("input", {
        id: this.id, name: this.name, type, placeholder,
        step: numeric ? (this.itemType === "integer" ? "1" : "any") : null,
        min: this.schema.minimum,
        inputmode: numeric ? (this.itemType === "integer" ? "numeric" : "decimal") : null,
        autocomplete: this.zyra.secret ? "new-password" : "off",
        spellcheck: "false",
        "aria-required": this.required ? "true" : null,
      });
    }
    let suffix = this.array ? `, ${MULTI_LINE}` : "";
    if (this.object) suffix = ", a JSON object or a path";
    if (this.zyra.secret) suffix += ", secret";
    return h("div", { class: "field" },
      h("label", { for: this.id }, this.labelText(suffix)), this.input, this.help(), this.errorText);
  }

  read() {
    const text = this.input.value;
    if (this.object && text.trim().startsWith("{")) {
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw `is not valid JSON: ${error.message}`;
      }
      return { value: parsed };
    }
    if (this.array) {
      const values = lines(text).map((line) => parseItem(line, this.itemType));
      if (values.length) checkCount(values, this.schema);
      return { value: values.length ? values : undefined };
    }
    const trimmed = this.itemType === "string" ? text : text.trim();
    if (trimmed === "") return { value: undefined };
    return { value: parseItem(trimmed, this.itemType) };
  }
}

/** A file the command reads: upload one (or several), or name it. */
class InputPathField extends TextField {
  render() {
    const array = typesOf(this.schema).includes("array");
    this.fileInput = this.control("input", {
      type: "file", id: `${this.id}-file`, name: `${this.name}-file`, multiple: array,
    });
    const typed = super.render();
    const ways = this.zyra.accepts_url ? "a server path, URL or file_id:…" : "a server path or file_id:…";
    typed.querySelector("label").textContent =
      `${this.name}: or ${ways}${this.array ? `, ${MULTI_LINE}` : ""}`;
    return h("fieldset", { class: "field-group" },
      h("legend", {}, this.labelText()),
      h("div", { class: "field" },
        h("label", { for: `${this.id}-file` }, `${this.name}: upload ${array ? "files" : "a file"}`),
        this.fileInput),
      typed);
  }

  read() {
    const files = [...this.fileInput.files];
    const typed = super.read();
    if (!files.length) return typed;
    if (!this.array && typed.value !== undefined) {
      throw "upload a file or type where it is, not both";
    }
    return { files, value: typed.value };
  }
}

function fieldFor(name, schema, required) {
  const zyra = schema["x-zyra"] || {};
  const types = typesOf(schema);
  if (types.includes("boolean")) return new FlagField(name, schema, required);
  if (schema.enum || schema.items?.enum) return new ChoiceField(name, schema, required);
  if (zyra.path === "input") return new InputPathField(name, schema, required);
  return new TextField(name, schema, required);
}

/**
 * The fields of a command's `schema`: `element` to put in the form; `read()` answers
 * {args, uploads: [{name, files, array, typed}], problems: [{field, message}]};
 * `showProblems` marks the fields the server named (`loc: ["body", "args", name, …]`).
 */
export function argumentForm(schema) {
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(
    ([name, property]) => fieldFor(name, property, required.has(name)));
  const byName = new Map(fields.map((field) => [field.name, field]));
  const files = fields.filter((f) => f.zyra.path && f.zyra.path !== "none");
  const options = fields.filter((f) => !files.includes(f));
  // Required first, then files read before files written; otherwise the catalog's order.
  const rank = (f) => (f.required ? 0 : 2) + (f.zyra.path === "output" ? 1 : 0);
  const order = (a, b) => rank(a) - rank(b);
  const group = (legend, members) => members.length
    ? h("fieldset", { class: "arg-group" }, h("legend", {}, legend),
      members.sort(order).map((field) => field.render()))
    : null;
  const element = h("div", { class: "arguments" },
    fields.length ? null : h("p", {}, "This command takes no arguments."),
    group("Files", files), group("Options", options));

  return {
    element,
    fields,
    read() {
      const args = {};
      const uploads = [];
      const problems = [];
      for (const field of fields) {
        field.setError("");
        try {
          const { value, files: chosen } = field.read();
          if (chosen) {
            uploads.push({ name: field.name, files: chosen, array: Boolean(field.array), typed: value });
          } else if (value !== undefined) {
            args[field.name] = value;
          } else if (field.required) {
            throw "is required";
          }
        } catch (message) {
          problems.push({ field, message: `${field.name} ${message}` });
        }
      }
      return { args, uploads, problems };
    },
    showProblems(problems) {
      for (const { field, message } of problems) field.setError(message);
    },
    fieldNamed(name) {
      return byName.get(name);
    },
  };
}
