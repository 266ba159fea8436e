// The demo page: start an agent, watch its state, metrics and events, close it.
// Everything goes through agentplane.js, as a web app of your own would.
//
// Query parameters: ?call_id=... prefills the call id, ?token=... the API token
// (needed when the server has auth on; the token field does the same).
//
// After a reload the page knows its call (the URL, or sessionStorage) but not
// its session: it lists the call's running sessions (ListSessions) and
// re-attaches to the newest instead of starting another agent.
import { AgentplaneClient, AgentplaneError, newIdempotencyKey } from "./agentplane.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// The page lives at <gateway>/demo/; the API is the gateway's root.
const baseUrl = new URL("..", location.href).href;

// The call this tab last started an agent in: survives a reload, not the tab.
const CALL = "agentplane.demo.callId";
const knownCall = params.get("call_id") || sessionStorage.getItem(CALL);
$("call-id").value = knownCall || `demo-call-${Math.random().toString(36).slice(2, 8)}`;

// A Start in flight keeps its idempotency key in sessionStorage: reloaded
// before Start answered, the page retries with the same key, so it finds the
// session that Start made (or starts it once), never a second one.
const PENDING = "agentplane.demo.pendingStart";
function pendingStart() {
  try {
    return JSON.parse(sessionStorage.getItem(PENDING) || "null");
  } catch {
    return null;
  }
}
function keyFor(callId) {
  const pending = pendingStart();
  if (pending?.call_id === callId && pending.key) return pending.key;
  const key = newIdempotencyKey();
  sessionStorage.setItem(PENDING, JSON.stringify({ call_id: callId, key }));
  return key;
}
$("token").value = params.get("token") || "";

// Leaving, reloading or closing the tab ends the agent (sendBeacon) unless the
// box is cleared: then a reload finds the agent again. The choice survives a reload.
const CLOSE_ON_LEAVE = "agentplane.demo.closeOnLeave";
$("close-on-leave").checked = sessionStorage.getItem(CLOSE_ON_LEAVE) !== "no";
$("close-on-leave").addEventListener("change", () => {
  sessionStorage.setItem(CLOSE_ON_LEAVE, $("close-on-leave").checked ? "yes" : "no");
  if (session !== null && live) armCloseOnLeave(session);
  if (session !== null && live) $("hint").textContent = leaveHint();
});
const leaveHint = () => $("close-on-leave").checked
  ? "Leaving, reloading or closing this tab now ends the agent (sendBeacon)."
  : "The agent keeps running when you leave: reload the page to find it again, or press Close.";
function armCloseOnLeave(current) {
  disarm?.();
  disarm = $("close-on-leave").checked ? client.closeOnPageHide(current) : null;
}

let client = null;
let session = null;
let stream = null;
let disarm = null;
let live = false; // a session is running: the page still expects its events

const newClient = () => new AgentplaneClient({ baseUrl, token: $("token").value.trim() || null });

const interrupted = pendingStart();
if (interrupted?.call_id) {
  $("call-id").value = interrupted.call_id;
  queueMicrotask(() => $("start-form").requestSubmit()); // resume the interrupted Start
} else if (knownCall) {
  queueMicrotask(() => reattach(knownCall));
}

$("start-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  showError(null);
  reset();
  client = newClient();
  $("start").disabled = true;
  const callId = $("call-id").value.trim();
  try {
    session = await client.start({ call_id: callId, call_type: "default", idempotency_key: keyFor(callId) });
  } catch (error) {
    if (!error?.networkFailure) sessionStorage.removeItem(PENDING); // a definite answer
    showError(error);
    $("start").disabled = false;
    return;
  }
  sessionStorage.removeItem(PENDING); // answered: a later Start is a new one
  sessionStorage.setItem(CALL, callId);
  attach(session, leaveHint());
});

/** Finds the call's running sessions and shows the newest (after a reload). */
async function reattach(callId) {
  if (session !== null) return;
  client ??= newClient();
  let found;
  try {
    found = await client.listSessions({ callId, states: ["SESSION_STATE_RUNNING"], pageSize: 1 });
  } catch (error) {
    // With auth on and no token yet, there is nothing to find: say so quietly.
    if (error instanceof AgentplaneError && error.codeName === "UNAUTHENTICATED") {
      $("hint").textContent = "Enter the API token and press Refresh to find this call's sessions.";
    } else {
      showError(error);
    }
    return;
  }
  const running = found.sessions[0];
  if (running && session === null) {
    showError(null);
    reset();
    attach(running, `Re-attached to the agent already running in call ${callId}. ${leaveHint()}`);
  } else {
    listCallSessions(callId);
  }
}

/** Shows a session (just started, or found running) and follows it until it ends. */
function attach(current, hint) {
  session = current;
  live = true;
  $("call-id").value = current.call_id;
  $("start").disabled = true;
  // From here on, leaving or closing the tab ends the agent (unless kept).
  armCloseOnLeave(current);
  $("close").disabled = false;
  $("hint").textContent = hint;
  $("session-id").textContent = current.session_id;
  $("session-call").textContent = current.call_id;
  $("started-at").textContent = formatTime(current.session_started_at);
  $("stream").textContent = "connecting…";
  stream = client.events(current, {
    afterCursor: 0, // replay what happened since the start, then follow live
    onOpen: () => { $("stream").textContent = "live"; },
    onEvent: (event) => onEvent(current, event),
    onError: (error) => {
      $("stream").textContent = "stopped";
      showError(error);
    },
  });
  Promise.all([client.get(current), client.metrics(current)])
    .then(([found, metrics]) => {
      // The events may have overtaken these answers: they have the last word.
      if (!live || session !== current) return;
      renderSession(found);
      renderMetrics(metrics.metrics ?? {});
    })
    .catch(showError);
  listCallSessions(current.call_id);
}

// ------------------------------------------------------------ call sessions

let listing = 0; // the latest listing wins

/** The call's sessions (running, and ended within the server's retention), newest first. */
async function listCallSessions(callId) {
  const mine = ++listing;
  client ??= newClient();
  let page;
  try {
    page = await client.listSessions({ callId, pageSize: 10 });
  } catch (error) {
    if (mine === listing) showError(error);
    return;
  }
  if (mine !== listing) return;
  $("call-sessions-call").textContent = callId;
  const rows = page.sessions.map((found) => {
    const row = document.createElement("tr");
    row.dataset.sessionId = found.session_id;
    row.dataset.state = short(found.state, "SESSION_STATE_");
    const shown = session?.session_id === found.session_id;
    if (shown) row.className = "shown";
    const state = document.createElement("span");
    state.className = "badge";
    state.dataset.state = row.dataset.state;
    state.textContent = row.dataset.state;
    const id = document.createElement("span");
    id.className = "mono";
    id.textContent = found.session_id;
    const action = document.createElement("td");
    if (shown) {
      action.textContent = "shown above";
    } else if (found.state === "SESSION_STATE_RUNNING" && !live) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Show";
      button.addEventListener("click", () => {
        showError(null);
        reset();
        attach(found, `Attached to a running agent of call ${found.call_id}. ${leaveHint()}`);
      });
      action.append(button);
    }
    const ended = found.end_reason && found.end_reason !== "END_REASON_UNSPECIFIED"
      ? short(found.end_reason, "END_REASON_") : "–";
    const cells = [state, id, formatTime(found.session_started_at), ended].map((content) => {
      const cell = document.createElement("td");
      cell.append(content);
      return cell;
    });
    row.append(...cells, action);
    return row;
  });
  $("call-sessions").querySelector("tbody").replaceChildren(...rows);
  $("call-sessions").hidden = rows.length === 0;
  $("call-sessions-empty").hidden = rows.length > 0;
  $("call-sessions-more").hidden = !page.nextPageToken;
}

$("refresh-sessions").addEventListener("click", () => {
  const callId = $("call-id").value.trim();
  if (!callId) return;
  client = live ? client : newClient(); // a token typed since counts
  if (session === null) reattach(callId);
  else listCallSessions(callId);
});

$("close").addEventListener("click", async () => {
  const current = session;
  if (current === null) return;
  $("close").disabled = true;
  try {
    renderSession(await client.close(current));
    finish(current);
  } catch (error) {
    showError(error);
    $("close").disabled = false;
  }
});

function onEvent(current, event) {
  if (session !== current) return;
  log(event);
  if (event.started) renderSession(event.started.session);
  else if (event.state_changed) setState(event.state_changed.state);
  else if (event.metrics_updated) renderMetrics(event.metrics_updated.metrics ?? {});
  else if (event.ended) {
    renderSession(event.ended.session);
    renderMetrics(event.ended.metrics ?? {});
    $("stream").textContent = "done (the session ended)";
    finish(current);
  } else if (event.gap) {
    client.get(current).then(renderSession, showError);
  }
}

function finish(current) {
  if (session !== current) return;
  live = false;
  disarm?.();
  disarm = null;
  $("close").disabled = true;
  $("start").disabled = false;
  $("hint").textContent = "";
  listCallSessions(current.call_id);
}

function reset() {
  stream?.close();
  disarm?.();
  session = stream = disarm = null;
  live = false;
  setState(null);
  for (const id of ["session-id", "session-call", "started-at", "end-reason", "stream"]) $(id).textContent = "–";
  renderMetrics({});
  $("events").replaceChildren();
  $("events-empty").hidden = false;
}

// ------------------------------------------------------------------ render

const short = (name, prefix) => (name ?? "").replace(prefix, "").toLowerCase().replaceAll("_", " ");

function setState(state) {
  const badge = $("state");
  const name = state ? short(state, "SESSION_STATE_") : "none";
  badge.dataset.state = name;
  badge.textContent = state ? name : "no session";
}

function renderSession(value) {
  setState(value.state);
  $("session-id").textContent = value.session_id;
  $("session-call").textContent = `${value.call_id} (${value.call_type || "default"})`;
  $("started-at").textContent = formatTime(value.session_started_at);
  if (value.end_reason && value.end_reason !== "END_REASON_UNSPECIFIED") {
    const error = value.error_message ? `: ${value.error_message}` : "";
    $("end-reason").textContent = `${short(value.end_reason, "END_REASON_")}${error}, ${formatTime(value.ended_at)}`;
  }
}

function renderMetrics(metrics) {
  const rows = Object.keys(metrics).sort().map((name) => {
    const row = document.createElement("tr");
    row.dataset.metric = name;
    const label = document.createElement("td");
    label.className = "mono";
    label.textContent = name;
    const value = document.createElement("td");
    value.className = "num";
    value.textContent = metrics[name].toLocaleString("en-US", { maximumFractionDigits: 3 });
    row.append(label, value);
    return row;
  });
  $("metrics").querySelector("tbody").replaceChildren(...rows);
  $("metrics").hidden = rows.length === 0;
  $("metrics-empty").hidden = rows.length > 0;
}

function describe(event) {
  if (event.started) return ["started", `in call ${event.call_id}`];
  if (event.state_changed) {
    const change = event.state_changed;
    return ["state", `${short(change.previous_state, "SESSION_STATE_")} → ${short(change.state, "SESSION_STATE_")}`];
  }
  if (event.metrics_updated) return ["metrics", `${Object.keys(event.metrics_updated.metrics ?? {}).length} values`];
  if (event.agent_event) {
    const data = Object.entries(event.agent_event.data ?? {}).map(([key, value]) => `${key}: ${JSON.stringify(value)}`);
    return ["agent_event", [event.agent_event.name, ...data].join(" · ")];
  }
  if (event.ended) return ["ended", short(event.ended.session.end_reason, "END_REASON_")];
  if (event.gap) return ["gap", `missed events ${event.gap.after_cursor ?? 0}…${event.gap.next_cursor ?? 0}`];
  return ["event", JSON.stringify(event)];
}

function log(event) {
  const [kind, detail] = describe(event);
  const list = $("events");
  const last = list.lastElementChild;
  // Metrics updates come every second: one line that counts them keeps the log readable.
  if (kind === "metrics" && last?.dataset.kind === "metrics") {
    const count = Number(last.dataset.count) + 1;
    last.dataset.count = String(count);
    last.querySelector(".time").textContent = formatClock(event.time);
    last.querySelector(".detail").textContent = `${detail} (${count} updates)`;
    return;
  }
  const item = document.createElement("li");
  item.dataset.kind = kind;
  item.dataset.count = "1";
  item.dataset.cursor = event.cursor;
  for (const [name, text] of [["time", formatClock(event.time)], ["kind", kind === "agent_event" ? "agent event" : kind], ["detail", detail]]) {
    const cell = document.createElement("span");
    cell.className = name;
    cell.textContent = text;
    item.append(cell);
  }
  list.append(item);
  list.scrollTop = list.scrollHeight;
  $("events-empty").hidden = true;
}

function showError(error) {
  if (error === null) {
    $("error").textContent = "";
    return;
  }
  if (error instanceof AgentplaneError) {
    const retry = error.retryAfter !== null ? ` Retry in ${Math.ceil(error.retryAfter)} s.` : "";
    const status = error.httpStatus ? `HTTP ${error.httpStatus}, ` : "";
    $("error").textContent = `${error.codeName} (${status}code ${error.code}): ${error.message}.${retry}`;
  } else {
    $("error").textContent = String(error?.message ?? error);
  }
}

function formatTime(value) {
  // "sv-SE" formats as 2026-01-31 12:34:56, in the browser's time zone.
  return value ? new Date(value).toLocaleString("sv-SE") : "–";
}

function formatClock(value) {
  if (!value) return "";
  const date = new Date(value);
  return `${date.toLocaleTimeString("sv-SE")}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}
