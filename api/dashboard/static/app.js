// The dashboard's entry point: hash routes (#/jobs, #/jobs/<id>, #/run/<stage>/<command>),
// sign-in and sign-out. Each view answers a function that stops what it started
// (polling, event streams) when another view replaces it.

import { credential, forget, forgetCatalog, whenUnauthorized } from "./api.js";
import { announce, clear, showAlert } from "./dom.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderRun } from "./run.js";
import { renderSignIn } from "./signin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let teardown = null;
let notice = "";

function parseHash() {
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  return { parts, query: new URLSearchParams(search) };
}

function markCurrent(section) {
  for (const link of nav.querySelectorAll("a[data-route]")) {
    if (link.dataset.route === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route({ focus = true } = {}) {
  teardown?.();
  teardown = null;
  showAlert("");
  clear(main);
  document.title = "Zyra orchestrator";
  const signedIn = credential() !== null;
  nav.hidden = !signedIn;
  if (!signedIn) {
    teardown = renderSignIn(main, { onSignedIn: () => route(), notice });
    notice = "";
  } else {
    const { parts, query } = parseHash();
    if (parts[0] === "jobs" && parts[1]) {
      markCurrent("");
      teardown = renderJob(main, parts[1]);
    } else if (parts[0] === "run") {
      markCurrent("run");
      teardown = renderRun(main, { stage: parts[1], command: parts[2] });
    } else {
      markCurrent("jobs");
      teardown = renderJobs(main, query);
    }
  }
  // Focus moves to the new view's heading: screen readers announce it, and Tab goes on from there.
  if (focus) main.querySelector("h1")?.focus();
}

function signOut(message) {
  forget();
  forgetCatalog();
  notice = message;
  route();
  announce(message);
}

// The skip link moves focus itself: following `#main` would change the route.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  (main.querySelector("h1") || main).focus();
});
document.getElementById("sign-out").addEventListener("click", () => signOut("You have signed out."));
whenUnauthorized((error) => signOut(`Your credential was refused (${error.message}); sign in again.`));
window.addEventListener("hashchange", () => route());
document.getElementById("loading")?.remove();
route({ focus: false });
