// agentplane browser client: a small, dependency-free ES module for the
// agentplane HTTP/JSON gateway. Types: agentplane.d.ts (next to this file).
//
//   import { AgentplaneClient } from "/demo/agentplane.js";
//   const agentplane = new AgentplaneClient({ token });   // token only when auth is on
//   const session = await agentplane.start({ call_id: "my-call-123" });
//   agentplane.closeOnPageHide(session);                   // leaving the page ends the agent
//   const stream = agentplane.events(session, { afterCursor: 0, onEvent: (e) => console.log(e) });
//   const { sessions } = await agentplane.listSessions({ callId: "my-call-123", states: ["SESSION_STATE_RUNNING"] });
//   for await (const s of agentplane.iterSessions({ endReasons: ["END_REASON_ERROR"] })) console.log(s);
//
// Request and response objects are the gateway's JSON (protojson with proto
// field names: call_id, session_started_at, ...). Every failure is an
// AgentplaneError carrying the gRPC code and message of the gateway's error body.

/** gRPC status code names, indexed by code. */
export const CODE_NAMES = Object.freeze([
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
]);

const UNKNOWN = 2;
const DEADLINE_EXCEEDED = 4;
const UNAVAILABLE = 14;

// Only for error bodies that are not the gateway's JSON (a proxy's HTML page,
// a load balancer's 502): the inverse of grpc-gateway's table, one code per status.
const CODE_OF_HTTP_STATUS = {
  400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 499: 1, 501: 12,
  502: UNAVAILABLE, 503: UNAVAILABLE, 504: DEADLINE_EXCEEDED,
};

const RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

/** A failed call: the gRPC status the gateway answered, plus the HTTP side of it. */
export class AgentplaneError extends Error {
  /**
   * @param {number} code gRPC status code
   * @param {string} message
   * @param {{httpStatus?: number, details?: object[], retryAfter?: number | null, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "AgentplaneError";
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? `CODE_${code}`;
    this.httpStatus = extra.httpStatus ?? 0;
    this.details = extra.details ?? [];
    this.retryAfter = extra.retryAfter ?? retryDelayOf(this.details);
  }

  /** The ErrorInfo reason in the details (e.g. "MAX_CONCURRENT_SESSIONS"), or null. */
  get reason() {
    const info = this.details.find((d) => d && d["@type"] === ERROR_INFO);
    return info && typeof info.reason === "string" ? info.reason : null;
  }

  /** An error from a google.rpc.Status JSON body (the gateway's error shape). */
  static fromStatus(status, httpStatus = 0, retryAfter = null) {
    const code = Number.isInteger(status?.code) ? status.code : UNKNOWN;
    const message = typeof status?.message === "string" ? status.message : CODE_NAMES[code] ?? "";
    const details = Array.isArray(status?.details) ? status.details : [];
    return new AgentplaneError(code, message, { httpStatus, details, retryAfter });
  }
}

function retryDelayOf(details) {
  const info = details.find((d) => d && d["@type"] === RETRY_INFO);
  const delay = info && (info.retry_delay ?? info.retryDelay);
  const seconds = typeof delay === "string" ? parseFloat(delay) : NaN;
  return Number.isFinite(seconds) ? seconds : null;
}

function retryAfterHeader(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

async function errorFromResponse(response) {
  const retryAfter = retryAfterHeader(response);
  let text = "";
  try {
    text = await response.text();
    const status = JSON.parse(text);
    if (status && Number.isInteger(status.code)) {
      return AgentplaneError.fromStatus(status, response.status, retryAfter);
    }
  } catch {
    // Not the gateway's JSON: fall back on the HTTP status below.
  }
  const code = CODE_OF_HTTP_STATUS[response.status] ?? UNKNOWN;
  const message = `HTTP ${response.status} ${response.statusText}`.trim() + (text ? `: ${text.slice(0, 200)}` : "");
  return new AgentplaneError(code, message, { httpStatus: response.status, retryAfter });
}

function networkError(cause) {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const error = new AgentplaneError(UNAVAILABLE, `agentplane gateway unreachable: ${detail}`, { cause });
  error.networkFailure = true; // no answer at all: the request may or may not have arrived
  return error;
}

/** A new idempotency key for start() (random, 32 hex digits). */
export function newIdempotencyKey() {
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID().replaceAll("-", "");
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function sessionIdOf(session) {
  const id = typeof session === "string" ? session : session?.session_id;
  if (typeof id !== "string" || id === "") {
    throw new TypeError("expected a session id or an object with a session_id");
  }
  return id;
}

const sessionPath = (id) => `/sessions/${encodeURIComponent(id)}`;

// listSessions() filter member -> ListSessionsRequest field (a query parameter).
const LIST_FIELDS = Object.freeze({
  states: "states", endReasons: "end_reasons", createdBy: "created_by",
  startedAfter: "started_after", startedBefore: "started_before",
  endedAfter: "ended_after", endedBefore: "ended_before",
  orderBy: "order_by", pageSize: "page_size", pageToken: "page_token",
});
const REPEATED = new Set(["states", "endReasons"]);
const TIMES = new Set(["startedAfter", "startedBefore", "endedAfter", "endedBefore"]);

function queryValue(name, value) {
  if (TIMES.has(name)) {
    if (value instanceof Date) {
      if (Number.isNaN(value.getTime())) throw new TypeError(`listSessions: ${name} is an invalid Date`);
      return value.toISOString();
    }
    if (typeof value !== "string") throw new TypeError(`listSessions: ${name} must be a Date or an RFC 3339 string`);
    return value;
  }
  if (name === "pageSize") {
    if (!Number.isInteger(value)) throw new TypeError("listSessions: pageSize must be an integer");
    return String(value);
  }
  if (typeof value !== "string") throw new TypeError(`listSessions: ${name} must be a string`);
  return value;
}

/** The path and query of a ListSessions request (GET /sessions or /calls/{call_id}/sessions). */
function listPath(filter) {
  if (filter === null || typeof filter !== "object") throw new TypeError("listSessions: expected a filter object");
  const query = new URLSearchParams();
  let path = "/sessions";
  for (const [name, value] of Object.entries(filter)) {
    if (value === undefined || value === null || value === "") continue;
    if (name === "callId") {
      if (typeof value !== "string") throw new TypeError("listSessions: callId must be a string");
      path = `/calls/${encodeURIComponent(value)}/sessions`;
      continue;
    }
    const field = LIST_FIELDS[name];
    // A misspelt filter (call_id, state) would silently list everything: refuse it.
    if (field === undefined) throw new TypeError(`listSessions: unknown filter ${JSON.stringify(name)}`);
    if (REPEATED.has(name)) {
      for (const item of Array.isArray(value) ? value : [value]) query.append(field, queryValue(name, item));
    } else {
      query.append(field, queryValue(name, value));
    }
  }
  const search = query.toString();
  return search ? `${path}?${search}` : path;
}

/** Talks to one agentplane gateway. */
export class AgentplaneClient {
  /** @param {import("./agentplane").ClientOptions} [options] */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
    this.token = options.token || null;
    this._fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /**
   * Starts an agent for a call; answers once the agent is in the call. The
   * request carries an idempotency key (a new one unless given): when the
   * gateway cannot be reached mid-Start, the one retry sends the same key,
   * so it answers the session the first attempt may have started instead of
   * starting a second. Keep the key (e.g. in sessionStorage) to retry after
   * a reload: newIdempotencyKey() makes one.
   */
  async start(request) {
    const body = { ...request, idempotency_key: request?.idempotency_key || newIdempotencyKey() };
    try {
      return await this._request("POST", "/sessions", body);
    } catch (error) {
      if (!(error instanceof AgentplaneError) || !error.networkFailure) throw error;
      return this._request("POST", "/sessions", body);
    }
  }

  /** Reads a session: running, or ended within the server's retention window. */
  get(session) {
    return this._request("GET", sessionPath(sessionIdOf(session)));
  }

  /** Reads a session's live metrics. */
  metrics(session) {
    return this._request("GET", `${sessionPath(sessionIdOf(session))}/metrics`);
  }

  /**
   * Lists the sessions the caller may view (running, and ended within the
   * server's retention window), newest first unless `orderBy` says
   * "session_started_at". Filters combine with AND; `states` and `endReasons`
   * match any of their values; times are Dates or RFC 3339 strings. Resolves
   * to `{ sessions, nextPageToken }`: pass `nextPageToken` back as `pageToken`
   * with the same filters for the next page, until it is "". A page may hold
   * fewer sessions than `pageSize` (even none) while more remain: the server
   * bounds the work of each page. iterSessions() walks every page.
   */
  listSessions(filter = {}) {
    return this._request("GET", listPath(filter)).then((page) => ({
      sessions: Array.isArray(page?.sessions) ? page.sessions : [],
      nextPageToken: typeof page?.next_page_token === "string" ? page.next_page_token : "",
    }));
  }

  /**
   * Every session listSessions(filter) finds, page after page, as an async
   * iterator: `for await (const session of client.iterSessions({ callId }))`.
   * Each page is fetched when the previous one is used up; breaking out of
   * the loop fetches no more.
   */
  async *iterSessions(filter = {}) {
    let pageToken = filter?.pageToken ?? "";
    do {
      const page = await this.listSessions({ ...filter, pageToken });
      yield* page.sessions;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /**
   * Ends a session and answers it as it ended. Given Start's answer, the
   * session's close token authorizes the close; otherwise the client's token does.
   */
  close(session) {
    const id = sessionIdOf(session);
    const closeToken = typeof session === "object" ? session.close_token : undefined;
    if (closeToken) {
      return this._request("POST", `${sessionPath(id)}/close`, { close_token: closeToken });
    }
    return this._request("DELETE", sessionPath(id));
  }

  /**
   * Watches events: of one session (given a session or its id), or of every
   * session the caller may view (given null). Reconnects by itself and resumes
   * after the last cursor it saw, without duplicates; when the server's log is
   * another one (a restart), a gap event says so and the new log's events
   * follow from its start. A session's stream stops
   * after its `ended` event. Returns a handle whose close() stops watching.
   */
  events(session, options) {
    if (typeof options?.onEvent !== "function") throw new TypeError("events() needs an onEvent callback");
    const id = session == null ? null : sessionIdOf(session);
    const Stream = this.token || options.transport === "fetch" || typeof EventSource !== "function"
      ? FetchEventStream
      : SourceEventStream;
    return new Stream(this, id, options);
  }

  /**
   * Ends the session with navigator.sendBeacon when the page is hidden for
   * good or unloaded (pagehide: closing the tab, navigating away, reloading),
   * or, with `whenHidden: true`, as soon as the page is hidden (mobile
   * browsers may discard a background tab without a pagehide). The beacon
   * carries the session's close token when Start gave one (auth on), so it
   * needs no credentials. Returns a function that disarms it; call that when
   * the session is closed another way.
   */
  closeOnPageHide(session, options = {}) {
    const url = `${this.baseUrl}${sessionPath(sessionIdOf(session))}/close`;
    const closeToken = typeof session === "object" ? session.close_token : undefined;
    const fetchFn = this._fetch;
    let armed = true;
    const send = () => {
      if (!armed) return;
      disarm();
      // A form body is a CORS-safelisted type: a cross-origin beacon needs no preflight.
      const body = closeToken ? new URLSearchParams({ close_token: closeToken }) : null;
      let queued = false;
      try {
        queued = navigator.sendBeacon(url, body);
      } catch {
        queued = false;
      }
      if (!queued) {
        // The beacon queue was full (or no sendBeacon): a keepalive fetch outlives the page too.
        fetchFn(url, { method: "POST", body, keepalive: true, credentials: "omit" }).catch(() => {});
      }
    };
    const onVisibility = () => {
      if (document.visibilityState === "hidden") send();
    };
    const disarm = () => {
      armed = false;
      window.removeEventListener("pagehide", send);
      document.removeEventListener("visibilitychange", onVisibility);
    };
    window.addEventListener("pagehide", send);
    if (options.whenHidden) document.addEventListener("visibilitychange", onVisibility);
    return disarm;
  }

  async _request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await this._fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw networkError(error);
    }
    if (!response.ok) throw await errorFromResponse(response);
    try {
      return await response.json();
    } catch (cause) {
      // A 2xx that is not the gateway's JSON: something else answered (a proxy, a login page).
      throw new AgentplaneError(UNKNOWN, `not a gateway answer (HTTP ${response.status})`, {
        httpStatus: response.status, cause,
      });
    }
  }
}

// ------------------------------------------------------------------ events

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 15000;
// Codes worth reconnecting after; anything else stops the stream.
const RETRYABLE = new Set([UNAVAILABLE, DEADLINE_EXCEEDED]);

function cursorAfter(value) {
  return value === undefined || value === null ? null : BigInt(value);
}

/** What both transports share: cursors, de-duplication, stopping. */
class EventStreamBase {
  constructor(client, sessionId, options) {
    this.client = client;
    this.sessionId = sessionId;
    this.url = client.baseUrl + (sessionId === null ? "/events" : `${sessionPath(sessionId)}/events`);
    this.options = options;
    this._cursor = cursorAfter(options.afterCursor);
    this._epoch = options.epoch || null;
    this.closed = false;
  }

  /** The last cursor seen (a decimal string), or null before the first event. */
  get cursor() {
    return this._cursor === null ? null : String(this._cursor);
  }

  /** The epoch of the log the cursor belongs to, or null before the first event. */
  get epoch() {
    return this._epoch;
  }

  urlAfter(cursor) {
    if (cursor === null) return this.url;
    const epoch = this._epoch === null ? "" : `epoch=${encodeURIComponent(this._epoch)}&`;
    return `${this.url}${this.url.includes("?") ? "&" : "?"}${epoch}after_cursor=${cursor}`;
  }

  /** One SSE message: returns false once the stream is over. */
  deliver(data, lastEventId) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (error) {
      this.fail(new AgentplaneError(UNKNOWN, `unreadable event: ${data.slice(0, 200)}`, { cause: error }));
      return false;
    }
    // The event id is "<epoch>:<cursor>"; the event's own fields say the same.
    const separator = (lastEventId ?? "").lastIndexOf(":");
    const raw = event.cursor ?? (lastEventId ?? "").slice(separator + 1);
    const epoch = event.epoch || (separator > 0 ? lastEventId.slice(0, separator) : null);
    if (epoch && epoch !== this._epoch) {
      // Another log (the server restarted, or another node answers): its
      // cursors start over, so they cannot be compared with ours. The server
      // begins such a stream with a gap event.
      this._epoch = epoch;
      this._cursor = null;
    }
    const cursor = raw === undefined || raw === "" ? null : BigInt(raw);
    if (cursor !== null) {
      // A reconnection resumes after the last cursor; never hand over an event twice.
      if (this._cursor !== null && cursor <= this._cursor) return true;
      this._cursor = cursor;
    }
    this.options.onEvent(event);
    if (this.sessionId !== null && event.ended) {
      this.close();
      return false;
    }
    return !this.closed;
  }

  fail(error) {
    if (this.closed) return;
    this.close();
    this.options.onError?.(error);
  }

  close() {
    this.closed = true;
  }
}

/** Without a token: the browser's EventSource (it resumes with Last-Event-ID). */
class SourceEventStream extends EventStreamBase {
  constructor(client, sessionId, options) {
    super(client, sessionId, options);
    const source = new EventSource(this.urlAfter(this._cursor));
    this.source = source;
    source.onopen = () => this.options.onOpen?.();
    source.onmessage = (message) => this.deliver(message.data, message.lastEventId);
    source.addEventListener("error", (event) => {
      if (this.closed) return;
      if (typeof event.data === "string") {
        // "event: error": the server ended the stream with a google.rpc.Status.
        this.fail(statusEvent(event.data));
      } else if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error answer): find out which error it was.
        this.diagnose();
      } // else CONNECTING: the browser reconnects and resumes by itself.
    });
  }

  async diagnose() {
    let error = new AgentplaneError(UNAVAILABLE, "the event stream failed");
    if (this.sessionId !== null) {
      try {
        await this.client.get(this.sessionId);
      } catch (found) {
        error = found;
      }
    }
    this.fail(error);
  }

  close() {
    super.close();
    this.source.close();
  }
}

function statusEvent(data) {
  try {
    return AgentplaneError.fromStatus(JSON.parse(data));
  } catch (cause) {
    return new AgentplaneError(UNKNOWN, `the event stream failed: ${data.slice(0, 200)}`, { cause });
  }
}

/** With a token (EventSource cannot send headers): fetch and parse the SSE stream here. */
class FetchEventStream extends EventStreamBase {
  constructor(client, sessionId, options) {
    super(client, sessionId, options);
    this.abort = new AbortController();
    this.retryMs = FIRST_RETRY_MS;
    this.run().catch((error) => this.fail(error instanceof AgentplaneError ? error : networkError(error)));
  }

  close() {
    super.close();
    this.abort.abort();
  }

  async run() {
    const headers = { Accept: "text/event-stream" };
    if (this.client.token) headers.Authorization = `Bearer ${this.client.token}`;
    let delay = this.retryMs;
    while (!this.closed) {
      let response = null;
      try {
        response = await this.client._fetch(this.urlAfter(this._cursor), {
          headers, cache: "no-store", signal: this.abort.signal,
        });
      } catch {
        // Network error (or close()): retry below unless closed.
      }
      if (this.closed) return;
      if (response !== null && !response.ok) {
        const error = await errorFromResponse(response);
        if (!RETRYABLE.has(error.code)) return this.fail(error);
        if (error.retryAfter !== null) delay = Math.max(delay, error.retryAfter * 1000);
      } else if (response !== null) {
        this.options.onOpen?.();
        delay = this.retryMs;
        try {
          await this.read(response.body);
        } catch {
          // The connection dropped: resume below.
        }
        if (this.closed) return;
      }
      await sleep(delay, this.abort.signal);
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  }

  /** Parses text/event-stream as the HTML standard does; resolves when the body ends. */
  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let type = "";
    let lastEventId = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.search(/\r\n|\r|\n/)) !== -1) {
          // A "\r" that ends the buffer may be the first half of "\r\n".
          if (buffer[end] === "\r" && end === buffer.length - 1) break;
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
          if (line === "") {
            if (data.length > 0) {
              const text = data.join("\n");
              if (type === "" || type === "message") {
                if (!this.deliver(text, lastEventId)) return;
              } else if (type === "error") {
                return this.fail(statusEvent(text));
              }
            }
            data = [];
            type = "";
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "data") data.push(value);
          else if (field === "event") type = value;
          else if (field === "id" && !value.includes("\0")) lastEventId = value;
          else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
