// Building the page with DOM calls only: whatever the API sends (a job's args, its
// stderr, its metadata) is attacker-controlled and goes in as text nodes, never as HTML.

/**
 * An element: `attrs` are attributes (`on` holds event listeners, `props` properties);
 * children are nodes or text (strings and numbers become text nodes; null is skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [type, listener] of Object.entries(value)) element.addEventListener(type, listener);
    } else if (name === "props") {
      Object.assign(element, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

let announceTimer = null;

/** Say `message` to screen readers (a polite live region) without moving focus. */
export function announce(message) {
  const region = document.getElementById("announcer");
  clearTimeout(announceTimer);
  // Emptied first: the same message twice is announced twice.
  region.textContent = "";
  announceTimer = setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** An error shown at the top of the page and announced at once (role="alert"). */
export function showAlert(message) {
  const alert = document.getElementById("alert");
  alert.textContent = message;
  alert.hidden = !message;
}

/** A date-time from the API as the user's local time (or the text itself if unparsable). */
export function when(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A definition list of [term, value] pairs; values are text or nodes. */
export function facts(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs },
    pairs.map(([term, value, id]) => [h("dt", {}, term), h("dd", id ? { id } : {}, value)]));
}

const STATUSES = new Set(["queued", "running", "succeeded", "failed", "cancelled"]);

/** A job's status as a badge; its class comes from a fixed list, never from the data. */
export function statusBadge(status) {
  const known = STATUSES.has(status) ? status : "unknown";
  return h("span", { class: `badge status-${known}` }, String(status));
}
