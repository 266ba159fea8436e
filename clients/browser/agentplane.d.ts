// Types of agentplane.js, the browser client of agentplane's HTTP/JSON gateway.
// Messages are the gateway's JSON: protojson of proto/agentplane/v1/ with proto
// field names; 64-bit integers (cursors) are decimal strings, timestamps RFC 3339.

export type SessionState =
  | "SESSION_STATE_UNSPECIFIED"
  | "SESSION_STATE_STARTING"
  | "SESSION_STATE_RUNNING"
  | "SESSION_STATE_ENDING"
  | "SESSION_STATE_ENDED";

export type EndReason =
  | "END_REASON_UNSPECIFIED"
  | "END_REASON_COMPLETED"
  | "END_REASON_CLOSED_BY_REQUEST"
  | "END_REASON_ERROR"
  | "END_REASON_IDLE_TIMEOUT"
  | "END_REASON_MAX_DURATION"
  | "END_REASON_SHUTDOWN"
  | "END_REASON_NODE_LOST";

/** A JSON value, as google.protobuf.Struct holds them. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** agentplane.v1.StartRequest */
export interface StartRequest {
  /** 1 to 128 characters from letters, digits and `_-.:`. */
  call_id: string;
  /** "default" when absent. */
  call_type?: string;
  /** Handed to the agent factory as keyword arguments; at most 16 KiB encoded. */
  metadata?: { [key: string]: JsonValue };
  /** Makes start() safe to retry; start() sends a new one when absent (see newIdempotencyKey). */
  idempotency_key?: string;
}

/** agentplane.v1.StartResponse: what closeOnPageHide() and close() want. */
export interface StartedSession {
  session_id: string;
  call_id: string;
  session_started_at: string;
  /** Closes this session, and only this one, without credentials (present when auth is on). */
  close_token?: string;
}

/** agentplane.v1.Session (fields at their default value may be absent). */
export interface Session {
  session_id: string;
  call_id: string;
  session_started_at?: string;
  call_type?: string;
  state?: SessionState;
  end_reason?: EndReason;
  ended_at?: string;
  error_message?: string;
  created_by?: string;
  metadata?: { [key: string]: JsonValue };
}

/** agentplane.v1.MetricsResponse */
export interface MetricsResponse {
  session_id: string;
  call_id: string;
  session_started_at?: string;
  metrics_generated_at?: string;
  /** `<name>__avg`, `<name>__total`, and for latencies `__count`, `__p50`, `__p95`, `__p99`, `__max`. */
  metrics?: { [name: string]: number };
}

/** agentplane.v1.StreamEventsResponse: exactly one of the optional members is set. */
export interface StreamEvent {
  /** Position in the server's event log (a 64-bit integer as a decimal string). */
  cursor: string;
  /** The log the cursor belongs to; another epoch (a restarted server) restarts the cursors. */
  epoch: string;
  session_id?: string;
  call_id?: string;
  time?: string;
  started?: { session: Session };
  state_changed?: { previous_state?: SessionState; state?: SessionState };
  metrics_updated?: { metrics?: { [name: string]: number } };
  ended?: { session: Session; metrics?: { [name: string]: number } };
  agent_event?: { name: string; data?: { [key: string]: JsonValue } };
  /** Events between after_cursor and next_cursor were missed: re-read what you care about. */
  gap?: { after_cursor?: string; next_cursor?: string };
}

/** What listSessions() and iterSessions() take: filters combine with AND; every member is optional. */
export interface ListSessionsFilter {
  /** Only the sessions of this call (asks `GET /calls/{call_id}/sessions`). */
  callId?: string;
  /** Only sessions in one of these states, e.g. ["SESSION_STATE_RUNNING"]. */
  states?: SessionState | SessionState[];
  /** Only sessions that ended for one of these reasons. */
  endReasons?: EndReason | EndReason[];
  /** Only sessions started by this user (`Session.created_by`). */
  createdBy?: string;
  /** Only sessions admitted at or after this time (a Date or an RFC 3339 string). */
  startedAfter?: Date | string;
  /** Only sessions admitted before this time. */
  startedBefore?: Date | string;
  /** Only sessions that ended at or after this time (running ones never match). */
  endedAfter?: Date | string;
  /** Only sessions that ended before this time (running ones never match). */
  endedBefore?: Date | string;
  /** "session_started_at desc" (the default: newest first) or "session_started_at" (oldest first). */
  orderBy?: "session_started_at desc" | "session_started_at" | "session_started_at asc";
  /** 1 to 1000; absent or 0: 50. */
  pageSize?: number;
  /** The previous page's nextPageToken, with the same filters; absent for the first page. */
  pageToken?: string;
}

/** One page of listSessions(). */
export interface SessionPage {
  /** The sessions of this page, in the requested order (maybe fewer than pageSize, even none). */
  sessions: Session[];
  /** Pass it as `pageToken` for the next page; "" on the last page. */
  nextPageToken: string;
}

export type SessionRef = string | { session_id: string; close_token?: string };

export interface ClientOptions {
  /** The gateway's origin (and path prefix); default "": the page's own origin. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer <token>` when the server has auth on. */
  token?: string | null;
  /** A fetch to use instead of the global one. */
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
}

export interface EventsOptions {
  /** Called for every event, in cursor order, each once. */
  onEvent: (event: StreamEvent) => void;
  /** The stream stopped for good (refused, or the server ended it with an error). */
  onError?: (error: AgentplaneError) => void;
  /** Called on every (re)connection. */
  onOpen?: () => void;
  /** Replay the buffered events after this cursor first (0: all of them); absent: from now on. */
  afterCursor?: string | number | bigint;
  /** The `epoch` afterCursor was read from (a stream's `epoch`); a foreign one replays with a gap. */
  epoch?: string;
  /**
   * How to stream: EventSource by default; "fetch" reads and parses the SSE stream itself.
   * A client with a token always uses fetch (EventSource cannot send an Authorization header).
   */
  transport?: "eventsource" | "fetch";
}

export interface EventStream {
  /** The last cursor delivered (decimal string), or null before the first event. */
  readonly cursor: string | null;
  /** The epoch of the log `cursor` belongs to, or null before the first event. */
  readonly epoch: string | null;
  /** True once stopped: by close(), after a session's `ended` event, or on an error. */
  readonly closed: boolean;
  close(): void;
}

export interface CloseOnPageHideOptions {
  /** Also close as soon as the page is hidden (tab switched, app backgrounded). Default false. */
  whenHidden?: boolean;
}

/** gRPC status code names, indexed by code. */
export declare const CODE_NAMES: readonly string[];

export type CodeName =
  | "OK" | "CANCELLED" | "UNKNOWN" | "INVALID_ARGUMENT" | "DEADLINE_EXCEEDED" | "NOT_FOUND"
  | "ALREADY_EXISTS" | "PERMISSION_DENIED" | "RESOURCE_EXHAUSTED" | "FAILED_PRECONDITION"
  | "ABORTED" | "OUT_OF_RANGE" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS"
  | "UNAUTHENTICATED";

/** A google.rpc.Status body, as the gateway answers errors. */
export interface Status {
  code: number;
  message?: string;
  details?: Array<{ "@type": string; [field: string]: unknown }>;
}

/** A failed call: the gRPC status the gateway answered, plus the HTTP side of it. */
export declare class AgentplaneError extends Error {
  constructor(
    code: number,
    message: string,
    extra?: {
      httpStatus?: number;
      details?: Array<{ "@type": string; [field: string]: unknown }>;
      retryAfter?: number | null;
      cause?: unknown;
    },
  );
  readonly name: "AgentplaneError";
  /** The gRPC status code (5 for NOT_FOUND, 16 for UNAUTHENTICATED, ...). */
  readonly code: number;
  readonly codeName: CodeName | `CODE_${number}`;
  /** The HTTP status; 0 when the gateway was not reached or the stream failed mid-way. */
  readonly httpStatus: number;
  /** google.rpc details: ErrorInfo, BadRequest, RetryInfo, ... (JSON with "@type"). */
  readonly details: Array<{ "@type": string; [field: string]: unknown }>;
  /** Seconds to wait before retrying (Retry-After or RetryInfo), or null. */
  readonly retryAfter: number | null;
  /** The ErrorInfo reason, e.g. "MAX_CONCURRENT_SESSIONS", or null. */
  readonly reason: string | null;
  /** True when no answer came at all (the request may or may not have reached the server). */
  networkFailure?: boolean;
  static fromStatus(status: Status, httpStatus?: number, retryAfter?: number | null): AgentplaneError;
}

/** A new random idempotency key for start() (32 hex digits); keep it to retry after a reload. */
export declare function newIdempotencyKey(): string;

/** Talks to one agentplane gateway. Every method rejects with an AgentplaneError. */
export declare class AgentplaneClient {
  constructor(options?: ClientOptions);
  readonly baseUrl: string;
  readonly token: string | null;
  /**
   * Starts an agent for a call; resolves once the agent is in the call. Sends an idempotency
   * key (a new one unless given) and retries once with it when the gateway was unreachable.
   */
  start(request: StartRequest): Promise<StartedSession>;
  get(session: SessionRef): Promise<Session>;
  metrics(session: SessionRef): Promise<MetricsResponse>;
  /**
   * Lists the sessions the caller may view, one page (`GET /sessions`, or
   * `GET /calls/{call_id}/sessions` with `callId`). Throws a TypeError for an unknown filter member.
   */
  listSessions(filter?: ListSessionsFilter): Promise<SessionPage>;
  /** Every session listSessions(filter) finds, fetching page after page as the loop goes on. */
  iterSessions(filter?: ListSessionsFilter): AsyncGenerator<Session, void, undefined>;
  /** Ends the session (by its close token when given Start's answer); resolves to it as it ended. */
  close(session: SessionRef): Promise<Session>;
  /** Watches one session (or every session, given null), resuming after the last cursor on reconnects. */
  events(session: SessionRef | null, options: EventsOptions): EventStream;
  /** Ends the session with sendBeacon when the page is left or closed; returns a function that disarms it. */
  closeOnPageHide(session: SessionRef, options?: CloseOnPageHideOptions): () => void;
}
