/**
 * baton.js: a JavaScript client for Baton sessions (PROTOCOL sections 2 to 6), as one ES module
 * with no dependencies and no build step. It speaks SSE over `fetch`, because EventSource can
 * neither POST a turn nor send the token header.
 *
 * What it does for you, as the Python client (client/baton_client) does:
 * - chains tokens: every committed turn's `continuationToken` replaces the one it consumed;
 * - sends every turn with an `Idempotency-Key`, kept in the store before the request leaves;
 * - retries network errors, 502/503/504 and dropped streams with the same key and token
 *   (exponential backoff with full jitter, never sooner than `Retry-After`), and waits out
 *   `409 in-flight`;
 * - resumes a stream that dropped after its priming message from GET .../events with
 *   `Last-Event-ID` and the token the turn is consuming; once the turn commits, that stream's
 *   outcome carries the token the turn issued, marked `"recovered": true`;
 * - never retries `stale-token`: it means the session moved on without this client (another
 *   tab, another device), and sending again would not change that. It is thrown, like every
 *   other refusal, as a {@link BatonError}.
 *
 * @example
 * import { BatonSession } from "/baton.js";
 * const session = new BatonSession();               // localStorage, same origin
 * for await (const event of session.stream({ message: "hello" })) {
 *   if (event.type === "delta") console.log(event.text);
 *   if (event.type === "outcome") console.log(event.status, event.output, event.turn);
 * }
 *
 * @module baton
 */

export const EVENT_STREAM = "text/event-stream";
const TOKEN_HEADER = "X-Continuation-Token";
const KEY_HEADER = "Idempotency-Key";
const REPLAYED_HEADER = "Idempotent-Replayed";

// An error event inside a stream has no status line; it carries the status its reason has as
// a buffered answer, so callers can treat both alike.
const IN_BAND_STATUS = { "turn-failed": 500, "internal-error": 500, cancelled: 409, unavailable: 503 };

// After these the turn may still have committed (its reply was lost), so its key is kept for
// the next call to settle; after any other error it certainly did not, and the key goes.
const UNDECIDED = new Set(["unavailable", "in-flight", "stale-token", "internal-error"]);

/**
 * The retry policy. Defaults are the Python client's.
 * @typedef {object} RetryPolicy
 * @property {number} maxAttempts   attempts of one call, the first included
 * @property {number} deadlineMs    how long one call may take, waits included
 * @property {number} baseDelayMs   first backoff ceiling; it doubles with every failure...
 * @property {number} maxDelayMs    ...up to this
 * @property {number} maxRetryAfterMs  a longer Retry-After is cut to this
 * @property {number} inFlightWaitMs   how long `409 in-flight` is waited out: longer than the
 *   server's lease (30 s by default), so a turn whose server died is taken over by the retry
 * @property {number} resumeIdleMs  a resumed stream that delivers nothing this long is given
 *   up and the turn sent again (its server may have died mid-turn)
 */
export const DEFAULT_POLICY = Object.freeze({
  maxAttempts: 10,
  deadlineMs: 90_000,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  maxRetryAfterMs: 30_000,
  inFlightWaitMs: 60_000,
  resumeIdleMs: 10_000,
});

/**
 * A refusal or failure: a 4xx/5xx answer, an in-band `error` event, or a network that stayed
 * down for longer than the policy allows (then `reason` is `unavailable` and `status` null).
 */
export class BatonError extends Error {
  /**
   * @param {string} message the server's message (`error` in a JSON answer)
   * @param {{reason?: string, status?: number|null, retryAfterMs?: number|null, cause?: unknown}} [details]
   */
  constructor(message, { reason = "error", status = null, retryAfterMs = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "BatonError";
    /** @type {string} the protocol's reason, e.g. `stale-token`, `turn-failed` */
    this.reason = reason;
    /** @type {number|null} the HTTP status (for an in-band error: its buffered status) */
    this.status = status;
    /** @type {number|null} */
    this.retryAfterMs = retryAfterMs;
  }
}

/** A stream that ended (or stalled) before the turn it carried did: worth another attempt. */
class Dropped extends Error {}
class Stalled extends Dropped {}
/** fetch failed, or a response body broke off: the request may or may not have landed. */
class NetworkError extends Error {}

// ------------------------------------------------------------------------------ storage

/**
 * Where a session lives between page loads. It holds exactly three strings: the session id,
 * the current token and, while a turn's outcome is not known, that turn's Idempotency-Key.
 * Never the input, never anything else.
 * @typedef {{sessionId: string|null, continuationToken: string|null, pendingKey: string|null}} Saved
 * @typedef {{load(): Saved|null, save(saved: Saved): void, clear(): void}} TokenStore
 */

/**
 * The default store: one localStorage entry, shared by every tab of the origin.
 * @param {string} [name]
 * @returns {TokenStore}
 */
export function localStorageStore(name = "baton.session") {
  return {
    load() {
      try {
        return normalise(JSON.parse(localStorage.getItem(name) ?? "null"));
      } catch {
        return null; // unreadable: as if there were no session
      }
    },
    save(saved) {
      localStorage.setItem(name, JSON.stringify(normalise(saved)));
    },
    clear() {
      localStorage.removeItem(name);
    },
  };
}

function defaultStore() {
  return typeof localStorage === "undefined" ? memoryStore() : localStorageStore();
}

/** A store for the life of the page (or process) only. @returns {TokenStore} */
export function memoryStore() {
  let saved = null;
  return {
    load: () => saved,
    save: (value) => void (saved = normalise(value)),
    clear: () => void (saved = null),
  };
}

/** @returns {Saved|null} only the three fields, each a string or null */
function normalise(value) {
  if (!value || typeof value !== "object") return null;
  const text = (field) => (typeof value[field] === "string" ? value[field] : null);
  return {
    sessionId: text("sessionId"),
    continuationToken: text("continuationToken"),
    pendingKey: text("pendingKey"),
  };
}

// --------------------------------------------------------------------------------- SSE

/**
 * @typedef {object} SseMessage
 * @property {string} id     the last event id seen on the stream (it carries over, as in SSE)
 * @property {string} event  `message` when the message named none
 * @property {string|null} data  null for a message without data, such as the priming message
 * @property {number|null} retry
 */

/**
 * Parses a `text/event-stream` body into messages, as the HTML standard's EventSource does,
 * except that a message with an `id:` (or `retry:`) but no data is yielded too: Baton's
 * priming message is exactly that, and its id is where a dropped stream resumes.
 * Lines may end in CRLF, LF or CR (even split across chunks); `data:` lines are joined with
 * newlines; comments (`: ping`) are skipped; an unterminated last message is discarded.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<SseMessage>}
 */
export async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader(); // drops a BOM too
  const parser = new SseParser();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let start = 0;
      for (;;) {
        const end = lineEnd(buffer, start);
        if (end === -1) break;
        const line = buffer.slice(start, end);
        start = end + (buffer.startsWith("\r\n", end) ? 2 : 1);
        const message = parser.line(line);
        if (message) yield message;
      }
      buffer = buffer.slice(start);
    }
  } finally {
    // Stopped early (the turn ended, or the caller gave up): close the connection.
    reader.cancel().catch(() => {});
  }
}

/** Where the line that starts at `start` ends, or -1 if it may not have ended yet. */
function lineEnd(buffer, start) {
  const cr = buffer.indexOf("\r", start);
  const lf = buffer.indexOf("\n", start);
  if (cr === -1) return lf;
  // A CR that ends the buffer may be the first half of a CRLF whose LF is in the next chunk.
  if (cr === buffer.length - 1 && (lf === -1 || lf > cr)) return -1;
  return lf === -1 ? cr : Math.min(cr, lf);
}

class SseParser {
  constructor() {
    this.lastId = "";
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "";
    this.retry = null;
    this.seen = false; // any field since the last blank line
  }

  /** Feed one line; returns a message when the line ends one. */
  line(line) {
    if (line === "") {
      if (!this.seen) return null;
      const data = this.data.join("\n");
      const message = {
        id: this.lastId,
        event: this.event || "message",
        data: data === "" ? null : data,
        retry: this.retry,
      };
      this.reset();
      return message;
    }
    if (line.startsWith(":")) return null; // a comment: keep-alive pings
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.retry = Number(value);
    else return null; // an unknown field is ignored, and does not start a message
    this.seen = true;
    return null;
  }
}

// ------------------------------------------------------------------------------ retries

/** One call's attempts: how many so far, since when, and how long to wait before the next. */
class Attempts {
  constructor(policy) {
    this.policy = policy;
    this.started = Date.now();
    this.failures = 0;
    this.inFlightSince = null;
  }

  /**
   * How long to wait before the next attempt after `error`, or throw if it is final. The
   * returned `cause` names why, for whoever shows progress.
   * @returns {{delayMs: number, cause: string, attempt: number}}
   */
  after(error) {
    if (error instanceof BatonError && error.reason === "in-flight") return this.inFlight(error);
    if (error instanceof BatonError && error.reason === "unavailable") {
      return this.retry(error, "unavailable", error.retryAfterMs);
    }
    if (error instanceof Stalled) return this.retry(error, "stalled", null);
    if (error instanceof Dropped) return this.retry(error, "dropped", null);
    if (error instanceof NetworkError) return this.retry(error, "network", null);
    throw error; // every refusal, stale-token first of all, and every failure of the turn
  }

  retry(error, cause, retryAfterMs) {
    const { maxAttempts, baseDelayMs, maxDelayMs, maxRetryAfterMs } = this.policy;
    this.failures += 1;
    // Full jitter: clients that lost the same server do not all come back at once.
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(this.failures - 1, 30));
    let delayMs = Math.random() * ceiling;
    if (retryAfterMs != null) delayMs = Math.max(delayMs, Math.min(retryAfterMs, maxRetryAfterMs));
    if (this.failures >= maxAttempts || delayMs > this.left()) throw this.final(error);
    return { delayMs, cause, attempt: this.failures + 1 };
  }

  /** `in-flight`: a turn holds the claim (our own, if an earlier attempt landed). Wait for it
   * to end rather than count it as a failure; the retry then gets the committed reply. */
  inFlight(error) {
    const now = Date.now();
    this.inFlightSince ??= now;
    const delayMs = Math.min(error.retryAfterMs ?? 1000, this.policy.maxRetryAfterMs);
    const waited = now - this.inFlightSince;
    if (waited + delayMs > this.policy.inFlightWaitMs || delayMs > this.left()) throw error;
    return { delayMs, cause: "in-flight", attempt: this.failures + 1 };
  }

  left() {
    return this.policy.deadlineMs - (Date.now() - this.started);
  }

  final(error) {
    if (error instanceof BatonError) return error;
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    return new BatonError(`gave up after ${this.failures} attempts in ${seconds} s: ${error.message}`, {
      reason: "unavailable",
      cause: error,
    });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A new Idempotency-Key: a random UUID (36 characters; a start needs at least 22). */
export function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID exists only in secure contexts (https, localhost); plain http on a LAN address
  // still has getRandomValues. 24 random bytes, base64url: 32 characters.
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

/** The exception an error answer stands for, from its `{"error", "reason"}` body. */
async function errorFromResponse(response) {
  const retryAfterMs = retryAfterOf(response);
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: something on the way (a proxy's HTML 502, say)
  }
  if (body && typeof body.reason === "string") {
    return new BatonError(String(body.error ?? ""), {
      reason: body.reason,
      status: response.status,
      retryAfterMs,
    });
  }
  const reason = [502, 503, 504].includes(response.status) ? "unavailable" : `http-${response.status}`;
  return new BatonError(response.statusText || `HTTP ${response.status}`, {
    reason,
    status: response.status,
    retryAfterMs,
  });
}

/** Retry-After in milliseconds (delta-seconds only; an HTTP date is ignored). */
function retryAfterOf(response) {
  const raw = response.headers.get("Retry-After");
  const seconds = raw === null ? NaN : Number(raw);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : null;
}

function inBandError(body) {
  const reason = String(body.reason ?? "error");
  return new BatonError(String(body.message ?? ""), { reason, status: IN_BAND_STATUS[reason] ?? null });
}

// ------------------------------------------------------------------------------ session

/**
 * What a turn stream yields, in order: records and deltas as they come, then one outcome.
 * A `retry` event says a connection was lost and what happens next (for a progress line);
 * after one with `resuming: false` the turn is sent again and its deltas start over.
 * @typedef {{type: "record", seq: number, record: any}} RecordEvent
 * @typedef {{type: "delta", text: string}} DeltaEvent
 * @typedef {{type: "outcome", sessionId: string, status: "finished"|"parked"|"contended",
 *   turn: number, output?: any, wait?: any, current?: number, continuationToken?: string,
 *   seq: number|null, records: Array<{seq: number, record: any}>, replayed: boolean,
 *   recovered: boolean}} OutcomeEvent
 * @typedef {{type: "retry", cause: string, attempt: number, delayMs: number, resuming: boolean}} RetryEvent
 * @typedef {RecordEvent|DeltaEvent|OutcomeEvent|RetryEvent} TurnEvent
 */

/**
 * One session, as this client holds it: its id, its current token, the turn under way.
 * Turns run one at a time.
 *
 * Several clients may share a store (every tab of a browser shares localStorage). A client
 * writes to the store only while it still holds what this client last read or wrote there,
 * so a tab whose session moved on elsewhere never puts its old token back over the newer one;
 * its next turn is refused `stale-token` instead, and reloading picks the session up again.
 */
export class BatonSession {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] where Baton answers; "" is this page's origin
   * @param {TokenStore} [options.store] default: localStorageStore() where there is a
   *   localStorage (browsers), else memoryStore()
   * @param {Partial<RetryPolicy>} [options.policy]
   * @param {typeof fetch} [options.fetch]
   */
  constructor({ baseUrl = "", store = defaultStore(), policy = {}, fetch: fetcher } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.store = store;
    this.policy = { ...DEFAULT_POLICY, ...policy };
    this._fetch = fetcher ?? globalThis.fetch.bind(globalThis);
    const saved = store.load();
    this._written = serialise(saved); // what the store held when this client last looked
    /** @type {string|null} */
    this.sessionId = saved?.sessionId ?? null;
    /** @type {string|null} the token the next turn presents (secret: never log it) */
    this.token = saved?.continuationToken ?? null;
    /** @type {string|null} the key of a turn whose outcome is not known yet */
    this.pendingKey = saved?.pendingKey ?? null;
    /** @type {number|null} the last committed turn, once known */
    this.turn = null;
    /** true once the store moved on without this client (another tab took the session on) */
    this.detached = false;
    this._busy = false;
  }

  /** A session exists (its first turn committed). */
  get started() {
    return this.token !== null && this.sessionId !== null;
  }

  /**
   * Run one turn (the first one starts the session), streamed.
   * @param {object} input the turn's input, a JSON object
   * @returns {AsyncGenerator<TurnEvent>} ends after the outcome; throws a BatonError for a
   *   refusal or a failed turn (the token then stays valid unless the reason says otherwise)
   */
  async *stream(input) {
    if (this._busy) throw new BatonError("a turn is already under way", { reason: "busy" });
    this._busy = true;
    try {
      await this._settlePending();
      const key = newKey();
      this.pendingKey = key;
      this._save(); // before the request leaves: a crash mid-turn still knows the key
      yield* this._settling(new Turn(this, input, key).events());
    } catch (error) {
      this._failed(error);
      throw error;
    } finally {
      this._busy = false;
    }
  }

  /**
   * Run one turn and return its outcome (the records and deltas are dropped).
   * @param {object} input
   * @returns {Promise<OutcomeEvent>}
   */
  async send(input) {
    let outcome = null;
    for await (const event of this.stream(input)) if (event.type === "outcome") outcome = event;
    return outcome;
  }

  /**
   * The session's stored events after seq `after`, streamed: records (`void: true` if their
   * attempt did not commit), outcomes and errors (failed attempts), each with its `seq`, then,
   * if a turn is in flight, its records as they are stored up to its end. Errors here are
   * history, yielded rather than thrown (an unstored `unavailable` one, with no seq, ends the
   * stream of a turn whose server died). A dropped stream is resumed where it stopped.
   *
   * This is how a reloaded page shows the conversation and learns what became of a turn that
   * was under way (`pendingKey`): if it committed, its outcome carries the token it issued,
   * which is adopted; if not, the key is dropped and the current token stays as it was.
   * @param {{after?: number}} [options]
   * @returns {AsyncGenerator<object>}
   */
  async *restore({ after = 0 } = {}) {
    if (!this.started) return;
    if (this._busy) throw new BatonError("a turn is already under way", { reason: "busy" });
    this._busy = true;
    try {
      const attempts = new Attempts(this.policy);
      let last = String(after);
      for (;;) {
        try {
          const headers = { ...this._tokenHeader(), Accept: EVENT_STREAM, "Last-Event-ID": last };
          const response = await this._request(this._url("/events"), { headers });
          for await (const body of objects(response)) {
            if (Number.isInteger(body.seq)) last = String(body.seq);
            if (body.priming !== undefined) continue;
            const event = storedEvent(body);
            if (event.type === "outcome" && event.continuationToken) this._settle(event);
            else if (event.type === "outcome" && event.status !== "contended") this.turn = event.turn;
            yield event;
          }
          break;
        } catch (error) {
          const next = attempts.after(error);
          yield { type: "retry", ...next, resuming: true };
          await sleep(next.delayMs);
        }
      }
      // The stream followed any turn in flight to its end. A pending turn that left no
      // recovered outcome did not commit: its key has nothing left to recover.
      if (this.pendingKey !== null) {
        this.pendingKey = null;
        this._save();
      }
    } finally {
      this._busy = false;
    }
  }

  /**
   * GET /v1/session/{id}: `{sessionId, status, turn, version, lastOutcome, updatedAt}`.
   * Consumes nothing.
   */
  async read() {
    this._requireStarted();
    const response = await this._call(this._url(), { headers: this._tokenHeader() });
    return response.json();
  }

  /** Close the session on the server (later turns get `410 closed`) and forget it here. */
  async close() {
    this._requireStarted();
    await this._call(this._url(), { method: "DELETE", headers: this._tokenHeader() });
    this.forget();
  }

  /** Forget the session (a new conversation): the next turn starts a new one. */
  forget() {
    this.store.clear();
    this._written = serialise(null);
    this.sessionId = this.token = this.pendingKey = this.turn = null;
    this.detached = false;
  }

  // ------------------------------------------------------------------ state

  async *_settling(events) {
    for await (const event of events) {
      if (event.type === "outcome") this._settle(event);
      yield event;
    }
  }

  _settle(outcome) {
    this.sessionId = outcome.sessionId;
    if (outcome.continuationToken) this.token = outcome.continuationToken; // the chain moves on
    if (outcome.status !== "contended") this.turn = outcome.turn;
    this.pendingKey = null;
    this._save();
  }

  _failed(error) {
    if (error instanceof BatonError && UNDECIDED.has(error.reason)) return; // keep the key
    if (this.pendingKey !== null) {
      this.pendingKey = null; // the turn certainly did not commit
      this._save();
    }
  }

  /** A pending key left by an earlier call or page: learn whether its turn committed. */
  async _settlePending() {
    if (this.pendingKey === null) return;
    const attempts = new Attempts(this.policy);
    while (this.started) {
      const view = await this.read();
      const last = view.lastOutcome;
      if (last?.recovered && last.continuationToken) {
        this._settle({ ...last, sessionId: view.sessionId }); // it did: take its token
        return;
      }
      if (view.status !== "in-flight") break; // idle with our token: it never committed
      await sleep(attempts.after(new BatonError("the pending turn is still running", { reason: "in-flight" })).delayMs);
    }
    this.pendingKey = null;
    this._save();
  }

  /** Write to the store, unless someone else (another tab) wrote there since we looked. */
  _save() {
    const current = serialise(this.store.load());
    if (current !== this._written) {
      this.detached = true;
      return;
    }
    const saved = { sessionId: this.sessionId, continuationToken: this.token, pendingKey: this.pendingKey };
    this.store.save(saved);
    this._written = serialise(saved);
  }

  // --------------------------------------------------------------- requests

  /** fetch, with network failures as NetworkError and error answers as BatonError. */
  async _request(url, init = {}) {
    let response;
    try {
      response = await this._fetch(this.baseUrl + url, init);
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new NetworkError(error?.message ?? String(error), { cause: error });
    }
    if (response.status !== 200) throw await errorFromResponse(response);
    return response;
  }

  /** A request retried by the policy until it answers 200 or fails for good. */
  async _call(url, init) {
    const attempts = new Attempts(this.policy);
    for (;;) {
      try {
        return await this._request(url, init);
      } catch (error) {
        await sleep(attempts.after(error).delayMs);
      }
    }
  }

  _requireStarted() {
    if (!this.started) throw new BatonError("the session has not started", { reason: "no-session" });
  }

  _url(suffix = "") {
    return `/v1/session/${encodeURIComponent(this.sessionId)}${suffix}`;
  }

  _tokenHeader() {
    return { [TOKEN_HEADER]: this.token };
  }
}

/** The store's content as one comparable string. */
function serialise(saved) {
  return JSON.stringify(normalise(saved));
}

/**
 * The JSON objects of an SSE response; a data-less message (the priming message) comes as
 * `{priming: id}`. A body that breaks off is a NetworkError.
 */
async function* objects(response, onMessage = () => {}) {
  try {
    for await (const message of sseMessages(response.body)) {
      onMessage();
      if (message.data === null) {
        yield { priming: message.id };
        continue;
      }
      const body = JSON.parse(message.data);
      if (body && typeof body === "object") yield { ...body, _id: message.id };
    }
  } catch (error) {
    if (error instanceof SyntaxError || error instanceof BatonError) throw error;
    if (error?.name === "AbortError") throw error;
    throw new NetworkError(error?.message ?? String(error), { cause: error });
  }
}

/** A stored event object (GET .../events) as restore() yields it. */
function storedEvent(body) {
  const { _id, ...event } = body;
  return { ...event, recovered: Boolean(event.recovered) };
}

/**
 * One turn: the POST's stream, and what happens when it drops. After the priming message
 * (the claim's seq) the turn is resumed from GET .../events with Last-Event-ID; before it,
 * or when the resumed stream stalls, or the turn was released as `unavailable`, the POST is
 * sent again with the same key and token. Records are yielded once each, however many
 * attempts it takes.
 */
class Turn {
  constructor(session, input, key) {
    this.session = session;
    this.input = input;
    this.key = key;
    this.lastId = null; // where a dropped stream resumes: the last SSE id received
    this.claim = 0; // the priming id of the POST sent last: its records come after it
    this.records = new Map(); // seq -> record, yielded so far
  }

  async *events() {
    const attempts = new Attempts(this.session.policy);
    for (;;) {
      // Only a started session can be resumed: a start has no token to read it with yet,
      // so a dropped start is sent again (the same key gets the same session).
      const resuming = this.lastId !== null && this.session.started;
      try {
        for await (const event of resuming ? this.resumed() : this.posted()) {
          yield event;
          if (event.type === "outcome") return;
        }
        throw new Dropped("the stream ended before the turn did");
      } catch (error) {
        if (error instanceof Stalled || (error instanceof BatonError && error.reason === "unavailable")) {
          this.lastId = null; // not running (or not where we follow it): send the turn again
        }
        const next = attempts.after(error); // throws what is final
        yield { type: "retry", ...next, resuming: this.lastId !== null && this.session.started };
        await sleep(next.delayMs);
      }
    }
  }

  async *posted() {
    const session = this.session;
    const headers = { "Content-Type": "application/json", Accept: EVENT_STREAM, [KEY_HEADER]: this.key };
    if (session.started) Object.assign(headers, session._tokenHeader());
    const url = session.started ? session._url("/message") : "/v1/session";
    const body = JSON.stringify(this.input);
    const response = await session._request(url, { method: "POST", headers, body });
    // A retry of a turn that committed: its stored records and outcome, given again.
    const replayed = response.headers.get(REPLAYED_HEADER)?.toLowerCase() === "true";
    for await (const object of objects(response)) {
      if (object.priming !== undefined) {
        if (/^[0-9]+$/.test(object.priming)) this.lastId = object.priming;
        this.claim = Number(object.priming);
        continue;
      }
      const event = this.live(object, replayed);
      if (event) yield event;
    }
  }

  live(body, replayed) {
    if (body.type === "record") return this.record(Number(body._id), body.record);
    if (body.type === "delta") return { type: "delta", text: String(body.text ?? "") };
    if (body.type === "outcome") {
      const seq = body._id && body.status !== "contended" ? Number(body._id) : null;
      return this.outcome(body, seq, { replayed, recovered: false });
    }
    if (body.type === "error") throw inBandError(body);
    return null; // a type this client does not know
  }

  /** The rest of a dropped turn stream, from the session's stored events. */
  async *resumed() {
    const session = this.session;
    const headers = { ...session._tokenHeader(), Accept: EVENT_STREAM, "Last-Event-ID": this.lastId };
    // A watchdog: a resumed stream that stays silent may follow a turn whose server died;
    // the server ends such a stream once the lease lapses, this is for when it cannot.
    const watchdog = new AbortController();
    let stalled = false;
    let timer;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ((stalled = true), watchdog.abort()), session.policy.resumeIdleMs);
    };
    arm();
    try {
      const response = await session._request(session._url("/events"), { headers, signal: watchdog.signal });
      for await (const body of objects(response, arm)) {
        if (body.priming !== undefined) continue;
        const event = await this.stored(body);
        if (event) yield event;
      }
    } catch (error) {
      if (stalled) throw new Stalled("the resumed stream stored nothing for a while");
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async stored(body) {
    const seq = Number(body.seq);
    if (body.type === "record" && body.void) {
      this.lastId = String(seq); // an attempt that did not commit; its error event follows
      return null;
    }
    if (body.type === "record") return this.record(seq, body.record);
    if (body.type === "outcome") {
      let outcome = this.outcome(body, seq, { replayed: false, recovered: Boolean(body.recovered) });
      if (!outcome.continuationToken && outcome.status !== "contended") outcome = await this.withToken(outcome);
      return outcome;
    }
    if (body.type === "error") throw inBandError(body);
    return null;
  }

  /** A resumed outcome that came without its token: read the session with the token the turn
   * consumed, whose last outcome then carries the one it issued. */
  async withToken(outcome) {
    const view = await this.session.read();
    const last = view.lastOutcome;
    if (!(last?.recovered && last.continuationToken && last.turn === outcome.turn)) {
      throw new BatonError("the turn committed, but the token it issued could not be recovered", {
        reason: "stale-token",
        status: 409,
      });
    }
    return { ...outcome, continuationToken: last.continuationToken, recovered: true };
  }

  record(seq, record) {
    this.lastId = String(seq);
    if (this.records.has(seq)) return null; // given again by a replay: yielded already
    this.records.set(seq, record);
    return { type: "record", seq, record };
  }

  outcome(body, seq, flags) {
    const { _id, type, seq: _seq, ...fields } = body;
    // The records of the attempt that ended the turn (an earlier attempt's are void).
    const records = [...this.records]
      .filter(([recordSeq]) => recordSeq > this.claim)
      .sort(([a], [b]) => a - b)
      .map(([recordSeq, record]) => ({ seq: recordSeq, record }));
    return { type: "outcome", ...fields, seq, records, ...flags };
  }
}
