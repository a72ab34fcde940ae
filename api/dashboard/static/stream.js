// A job's events (history, then live) until its end.
//
// The WebSocket /ws/jobs/{id} carries the credential as a subprotocol next to `zyra`
// (`apikey.<key>` or `bearer.<token>`): browsers cannot set headers on a WebSocket, and
// a key in the URL's query would reach proxies' logs and the browser's history. A
// credential that is not an HTTP token cannot be a subprotocol; then the SSE route is
// read with fetch, which sends the credential as a header.

import { apiUrl, authHeaders, credential } from "./api.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CLOSE_NORMAL = 1000;
const FATAL_CLOSES = {
  4401: "the server refused the credential",
  4403: "the credential lacks the read scope",
  4404: "no such job",
};

/**
 * @param {string} jobId
 * @param {{onEvent: (e: object) => void, onEnd: () => void,
 *          onProblem: (message: string, fatal: boolean) => void}} handlers
 * @returns {{stop: () => void}}
 */
export function followJob(jobId, { onEvent, onEnd, onProblem }) {
  let since = 0;
  let stopped = false;
  let socket = null;
  let aborter = null;
  let failures = 0;
  let timer = null;

  const deliver = (event) => {
    if (typeof event.seq === "number" && event.seq <= since) return; // seen before a reconnect
    if (typeof event.seq === "number") since = event.seq;
    failures = 0;
    onEvent(event);
  };
  const finish = () => {
    if (stopped) return;
    stopped = true;
    onEnd();
  };
  const fail = (message) => {
    if (stopped) return;
    stopped = true;
    onProblem(message, true);
  };
  const retry = (why) => {
    if (stopped) return;
    failures += 1;
    const delay = Math.min(1000 * 2 ** (failures - 1), 15000);
    if (failures > 1) onProblem(`${why}; reconnecting in ${Math.round(delay / 1000)} s`, false);
    timer = setTimeout(connect, delay);
  };

  function connectSocket(cred) {
    const url = apiUrl(`/ws/jobs/${encodeURIComponent(jobId)}`, { since });
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const offer = (cred.kind === "bearer" ? "bearer." : "apikey.") + cred.value;
    socket = new WebSocket(url, ["zyra", offer]);
    socket.onmessage = (message) => {
      try {
        deliver(JSON.parse(message.data));
      } catch {
        onProblem("an event that is not JSON was skipped", false);
      }
    };
    socket.onclose = (close) => {
      socket = null;
      if (close.code === CLOSE_NORMAL) finish();
      else if (close.code in FATAL_CLOSES) fail(`${FATAL_CLOSES[close.code]}: ${close.reason}`);
      else retry(`the event stream closed (${close.code}${close.reason ? ` ${close.reason}` : ""})`);
    };
  }

  async function connectEventSource() {
    aborter = new AbortController();
    let response;
    try {
      response = await fetch(apiUrl(`/jobs/${encodeURIComponent(jobId)}/events`, { since }), {
        headers: { ...authHeaders(), Accept: "text/event-stream" },
        credentials: "omit", cache: "no-store", signal: aborter.signal,
      });
    } catch {
      retry("the event stream could not connect");
      return;
    }
    if (response.status === 204) return finish();
    if (response.status === 401) return fail(FATAL_CLOSES[4401]);
    if (response.status === 403) return fail(FATAL_CLOSES[4403]);
    if (response.status === 404) return fail(FATAL_CLOSES[4404]);
    if (!response.ok) return retry(`the event stream answered HTTP ${response.status}`);
    let ended = false;
    let buffer = "";
    try {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trimStart()).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          deliver(event);
          if (TERMINAL.has(event.status)) ended = true;
        }
      }
    } catch {
      // cut off (or stopped): reconnect below unless stopped
    }
    if (ended) finish();
    else retry("the event stream was cut off");
  }

  function connect() {
    if (stopped) return;
    const cred = credential();
    if (!cred) return fail("signed out");
    if (!TOKEN.test(cred.value)) return connectEventSource();
    try {
      connectSocket(cred);
    } catch {
      connectEventSource(); // a browser that refuses the subprotocol all the same
    }
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (socket) socket.close(CLOSE_NORMAL);
      if (aborter) aborter.abort();
    },
  };
}
