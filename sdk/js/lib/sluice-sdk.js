// Helpers for Sluice plugins written in JavaScript.
//
// A Sluice plugin is a WebAssembly component that exports one world of
// wit/plugin.wit (`transform`, `destination` or `source`). componentize-js
// turns an ES module into such a component; this module gives it the shapes
// the contract expects, mirroring the Rust SDK:
//
// - values: text("a"), integer(1), nullValue(), ... and asStr(v), asInt(v), toJson(v)
//   (a value is `{ tag: 'text', val: 'a' }`; s64 payloads are BigInt);
// - batches: column(batch, 'email'), rowObject(batch, i);
// - errors: throw ConfigError, AuthError, RateLimitedError, RetryableError or
//   PermanentError from any call;
// - row results: accepted(), rejected(msg), retryable(msg), rateLimited(ms), ...;
// - the plugin: exportTransform({...}) / exportDestination({...}) return the
//   object to export as `transformApi` / `destinationApi`;
// - logging through the host: log.info('...');
// - an API's remaining quota passed up to the host: reportQuota(...);
// - HTTP with JSON, timeouts and the contract's status mapping:
//   await request('GET', url), await postJson(url, doc), then
//   response.errorForStatus() or response.rowResult().
//
// Outbound HTTP goes through the standard `fetch` (componentize-js
// implements it over wasi:http; the host checks every request against the
// plugin's grant).

import { log as hostLog, reportQuota as hostReportQuota } from 'sluice:plugin/host@0.1.0';

// ---------------------------------------------------------------- values

export const nullValue = () => ({ tag: 'null' });
export const boolean = (b) => ({ tag: 'boolean', val: Boolean(b) });
export const integer = (i) => ({ tag: 'integer', val: BigInt(i) });
export const float = (f) => ({ tag: 'float', val: Number(f) });
/** An exact decimal in plain notation, e.g. "-12.50". */
export const decimal = (s) => ({ tag: 'decimal', val: String(s) });
export const text = (s) => ({ tag: 'text', val: String(s) });
export const bytes = (b) => ({ tag: 'bytes', val: Uint8Array.from(b) });
/** An instant in microseconds since 1970-01-01T00:00:00Z. */
export const timestamp = (micros) => ({ tag: 'timestamp', val: BigInt(micros) });
/** A calendar date in days since 1970-01-01. */
export const date = (days) => ({ tag: 'date', val: Number(days) });
/** A JSON document; a string is taken as already serialised. */
export const json = (doc) => ({ tag: 'json', val: typeof doc === 'string' ? doc : JSON.stringify(doc) });

const TAGS = new Set(['null', 'boolean', 'integer', 'float', 'decimal', 'text', 'bytes', 'timestamp', 'date', 'json']);

/** A value from a plain JS value: null/undefined, boolean, number, bigint,
 * string, Uint8Array, or an object/array (as JSON). Contract values pass through. */
export function value(v) {
  if (v === null || v === undefined) return nullValue();
  if (typeof v === 'object' && TAGS.has(v.tag)) return v;
  if (typeof v === 'boolean') return boolean(v);
  if (typeof v === 'bigint') return integer(v);
  if (typeof v === 'number') return Number.isInteger(v) ? integer(v) : float(v);
  if (typeof v === 'string') return text(v);
  if (v instanceof Uint8Array) return bytes(v);
  if (typeof v === 'object') return json(v);
  throw new TypeError(`cannot turn a ${typeof v} into a Sluice value`);
}

export const isNull = (v) => v.tag === 'null';
/** The WIT case name of a value: 'text', 'integer', 'null', ... */
export const typeName = (v) => v.tag;

/** The text of a text, decimal or json value, else undefined. */
export function asStr(v) {
  return v.tag === 'text' || v.tag === 'decimal' || v.tag === 'json' ? v.val : undefined;
}

/** An integer (as a BigInt) from an integer, a whole float or numeric text. */
export function asInt(v) {
  switch (v.tag) {
    case 'integer':
      return v.val;
    case 'float':
      return Number.isInteger(v.val) ? BigInt(v.val) : undefined;
    case 'decimal':
    case 'text':
      return /^\s*-?\d+\s*$/.test(v.val) ? BigInt(v.val.trim()) : undefined;
    default:
      return undefined;
  }
}

export function asFloat(v) {
  switch (v.tag) {
    case 'integer':
    case 'float':
      return Number(v.val);
    case 'decimal':
    case 'text': {
      const n = Number(v.val.trim());
      return v.val.trim() !== '' && Number.isFinite(n) ? n : undefined;
    }
    default:
      return undefined;
  }
}

export const asBool = (v) => (v.tag === 'boolean' ? v.val : undefined);

function civilFromDays(days) {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

export function formatDate(days) {
  const [y, m, d] = civilFromDays(days);
  return `${pad(y, 4)}-${pad(m)}-${pad(d)}`;
}

export function formatTimestamp(micros) {
  const us = BigInt(micros);
  let secs = us / 1000000n;
  let frac = us % 1000000n;
  if (frac < 0n) {
    frac += 1000000n;
    secs -= 1n;
  }
  let days = secs / 86400n;
  let sod = secs % 86400n;
  if (sod < 0n) {
    sod += 86400n;
    days -= 1n;
  }
  const [y, m, d] = civilFromDays(Number(days));
  const s = Number(sod);
  const base = `${pad(y, 4)}-${pad(m)}-${pad(d)}T${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
  return frac === 0n ? `${base}Z` : `${base}.${pad(frac, 6)}Z`;
}

/** The value as a JSON-ready JS value, like the Rust SDK's Value::to_json:
 * timestamps as RFC 3339 UTC, dates as YYYY-MM-DD, bytes as lowercase hex,
 * decimals as numbers, JSON documents inline. Integers outside the safe
 * range stay exact as strings. */
export function toJson(v) {
  switch (v.tag) {
    case 'null':
      return null;
    case 'boolean':
    case 'text':
      return v.val;
    case 'integer': {
      const n = Number(v.val);
      return Number.isSafeInteger(n) ? n : v.val.toString();
    }
    case 'float':
      return Number.isFinite(v.val) ? v.val : null;
    case 'decimal': {
      const n = Number(v.val);
      return v.val.trim() !== '' && Number.isFinite(n) ? n : v.val;
    }
    case 'bytes':
      return Array.from(v.val, (b) => b.toString(16).padStart(2, '0')).join('');
    case 'timestamp':
      return formatTimestamp(v.val);
    case 'date':
      return formatDate(v.val);
    case 'json':
      try {
        return JSON.parse(v.val);
      } catch {
        return v.val;
      }
    default:
      throw new TypeError(`not a Sluice value: ${JSON.stringify(v)}`);
  }
}

// --------------------------------------------------------------- batches

/** The position of a column by name, or undefined. */
export function column(batch, name) {
  const i = batch.columns.indexOf(name);
  return i < 0 ? undefined : i;
}

/** The position of a column; a missing column is a config error. */
export function requireColumn(batch, name) {
  const i = column(batch, name);
  if (i === undefined) {
    throw new ConfigError(`column \`${name}\` is not in the batch (columns: ${batch.columns.join(', ')})`);
  }
  return i;
}

/** Row `i` as a JSON-ready object keyed by column name. */
export function rowObject(batch, i) {
  const out = {};
  batch.columns.forEach((c, j) => {
    out[c] = toJson(batch.rows[i][j]);
  });
  return out;
}

// ---------------------------------------------------------------- errors

/** A failure of a whole call. Throw a subclass; the SDK hands the contract's
 * `plugin-error` to the host (componentize-js reads it from `payload`). */
export class PluginError extends Error {
  constructor(tag, message, val = message) {
    super(message);
    this.name = this.constructor.name;
    this.payload = { tag, val };
  }
}

/** The config document is wrong; say which key. */
export class ConfigError extends PluginError {
  constructor(message) {
    super('config', message);
  }
}

/** Credentials were refused. */
export class AuthError extends PluginError {
  constructor(message) {
    super('auth', message);
  }
}

/** The API asked us to slow down; the host retries after `retryAfterMs`. */
export class RateLimitedError extends PluginError {
  constructor(retryAfterMs, message = 'rate limited') {
    super('rate-limited', message, { retryAfterMs: BigInt(retryAfterMs), message });
  }
}

/** A transient failure; the same call may succeed later. */
export class RetryableError extends PluginError {
  constructor(message) {
    super('retryable', message);
  }
}

/** A failure that retrying will not fix. */
export class PermanentError extends PluginError {
  constructor(message) {
    super('permanent', message);
  }
}

// ----------------------------------------------------------- row results

export const created = () => ({ tag: 'created' });
export const updated = () => ({ tag: 'updated' });
export const deleted = () => ({ tag: 'deleted' });
/** Accepted without saying whether it created or updated (webhooks). */
export const accepted = () => ({ tag: 'accepted' });
/** Refused for good; pass the API's own message. */
export const rejected = (message) => ({ tag: 'rejected', val: String(message) });
/** Failed transiently; the host retries the row with backoff. */
export const retryable = (message) => ({ tag: 'retryable', val: String(message) });
/** Throttled; the host retries the row after this many milliseconds. */
export const rateLimited = (ms) => ({ tag: 'rate-limited', val: BigInt(Math.max(0, Math.round(Number(ms)))) });
export const isOk = (r) => ['created', 'updated', 'deleted', 'accepted'].includes(r.tag);

// ------------------------------------------------------- spec and config

/** A plugin spec. `configSchema` is a JSON Schema (object or text);
 * `rateLimit` is `{ requests, perMs, concurrency }`. */
export function spec(name, version, description, { configSchema = { type: 'object' }, capabilities = [], rateLimit, batchSize = 1000 } = {}) {
  return {
    name,
    version,
    description,
    configSchema: typeof configSchema === 'string' ? configSchema : JSON.stringify(configSchema),
    capabilities: [...capabilities],
    rateLimit: rateLimit ? { requests: rateLimit.requests, perMs: rateLimit.perMs, concurrency: rateLimit.concurrency } : undefined,
    batchSize,
  };
}

/** Parse the JSON config document. Missing `required` keys and keys not in
 * `allowed` (when given) are config errors that name the key. */
export function parseConfig(config, { required = [], allowed } = {}) {
  let doc;
  try {
    doc = config.trim() === '' ? {} : JSON.parse(config);
  } catch (e) {
    throw new ConfigError(`invalid config: ${e.message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError('invalid config: expected a JSON object');
  }
  for (const key of required) {
    if (!(key in doc)) throw new ConfigError(`invalid config: missing field \`${key}\``);
  }
  if (allowed) {
    for (const key of Object.keys(doc)) {
      if (!allowed.includes(key)) {
        throw new ConfigError(`invalid config: unknown field \`${key}\`, expected one of ${allowed.join(', ')}`);
      }
    }
  }
  return doc;
}

// --------------------------------------------------------------- logging

/** Lines written here reach the host's log, tagged with the plugin name. */
export const log = {
  trace: (m) => hostLog('trace', String(m)),
  debug: (m) => hostLog('debug', String(m)),
  info: (m) => hostLog('info', String(m)),
  warn: (m) => hostLog('warn', String(m)),
  error: (m) => hostLog('error', String(m)),
};

// ----------------------------------------------------------------- quota

const U32_MAX = 2 ** 32 - 1;

/** `remaining` of `limit` calls are left in a rolling window of `windowMs`,
 * as the API said in its response headers (HubSpot's
 * `X-HubSpot-RateLimit-Remaining`, `-Max` and `-Interval-Milliseconds`).
 * The host adopts the API's pace when it is slower than the declared one and
 * holds calls while the window is used up, rather than running into a 429.
 * Report after each response that carries the headers. Daily allowances are
 * not windows to pace by: leave them out. */
export function reportQuota(remaining, limit, windowMs) {
  const u32 = (name, n) => {
    const v = Math.floor(Number(n));
    if (!Number.isFinite(v) || v < 0) {
      throw new PermanentError(`reportQuota: \`${name}\` must be a number of at least 0, got ${n}`);
    }
    return Math.min(v, U32_MAX);
  };
  hostReportQuota(u32('remaining', remaining), u32('limit', limit), u32('windowMs', windowMs));
}

// ------------------------------------------------------------------ http

/** A whole HTTP response: `status`, `headers` (a fetch Headers), `body` (text). */
export class HttpResponse {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  get ok() {
    return this.status >= 200 && this.status < 300;
  }

  /** The first value of a header (case-insensitive), or undefined. */
  header(name) {
    return this.headers.get(name) ?? undefined;
  }

  text() {
    return this.body;
  }

  /** The body as JSON; a body that is not JSON is a PermanentError. */
  json() {
    try {
      return JSON.parse(this.body);
    } catch (e) {
      throw new PermanentError(`HTTP ${this.status}: the response is not JSON (${e.message}): ${this.body.slice(0, 200)}`);
    }
  }

  /** `Retry-After` in milliseconds (delay-seconds form), or undefined when
   * absent or an HTTP date. */
  retryAfterMs() {
    const v = (this.headers.get('retry-after') ?? '').trim();
    const secs = Number(v);
    return v !== '' && Number.isFinite(secs) ? Math.round(Math.max(0, secs) * 1000) : undefined;
  }

  /** The contract error this (non-2xx) response stands for: 429 (and 503
   * with Retry-After) rate-limited after Retry-After (1 s when absent),
   * other 5xx and 408 retryable, 401/403 auth, the rest permanent. */
  toError() {
    const message = `HTTP ${this.status}: ${this.body.slice(0, 500)}`;
    const wait = this.retryAfterMs();
    if (this.status === 429 || (this.status === 503 && wait !== undefined)) {
      return new RateLimitedError(wait ?? 1000, message);
    }
    if (this.status === 401 || this.status === 403) return new AuthError(message);
    if (this.status === 408 || (this.status >= 500 && this.status <= 599)) return new RetryableError(message);
    return new PermanentError(message);
  }

  /** This response if it is 2xx, else throw `toError()`. */
  errorForStatus() {
    if (this.ok) return this;
    throw this.toError();
  }

  /** The row result this response stands for (a destination sending rows
   * one request each, or a batch all-or-nothing): 2xx accepted,
   * rate-limited and retryable statuses as such, other statuses rejected
   * with the API's message. 401/403 throw an AuthError: no row can succeed
   * with refused credentials. */
  rowResult() {
    if (this.ok) return accepted();
    const error = this.toError();
    if (error instanceof RateLimitedError) return rateLimited(error.payload.val.retryAfterMs);
    if (error instanceof RetryableError) return retryable(error.message);
    if (error instanceof AuthError) throw error;
    return rejected(error.message);
  }
}

/** Send a request and read the whole response. Options: `headers` (an
 * object), `body` (a string or bytes) or `json` (a document, sent with
 * `content-type: application/json`), `timeoutMs` (default 30 s, for the
 * whole exchange). A URL that is not http(s) is a PermanentError; a timeout
 * or a failed connection a RetryableError (after a request the sandbox
 * refused, the host reports the missing grant for the failed call). */
export async function request(method, url, { headers = {}, body, json: doc, timeoutMs = 30000 } = {}) {
  if (typeof url !== 'string' || !/^https?:\/\/[^/?#]+/.test(url)) {
    throw new PermanentError(`invalid URL \`${url}\`: expected http(s)://host/...`);
  }
  const sent = { ...headers };
  if (doc !== undefined) {
    if (body !== undefined) throw new PermanentError('request: pass `body` or `json`, not both');
    body = JSON.stringify(doc);
    if (!Object.keys(sent).some((k) => k.toLowerCase() === 'content-type')) sent['content-type'] = 'application/json';
  }
  const exchange = (async () => {
    const response = await fetch(url, { method, headers: sent, body, signal: AbortSignal.timeout(timeoutMs) });
    return new HttpResponse(response.status, response.headers, await response.text());
  })();
  // The engine's fetch does not end on its abort signal while it waits for
  // a response, so a timer settles the call instead; the exchange is left
  // to finish (or fail) unobserved.
  exchange.catch(() => {});
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new RetryableError(`request to ${url} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([exchange, timeout]);
  } catch (e) {
    if (e instanceof PluginError) throw e;
    if (e && (e.name === 'TimeoutError' || e.name === 'AbortError')) {
      throw new RetryableError(`request to ${url} timed out after ${timeoutMs} ms`);
    }
    throw new RetryableError(`request to ${url} failed: ${e && e.message ? e.message : e}`);
  } finally {
    clearTimeout(timer);
  }
}

/** GET a URL (options as for `request`). */
export const get = (url, options) => request('GET', url, options);

/** POST a JSON document (options as for `request`). */
export const postJson = (url, doc, options = {}) => request('POST', url, { ...options, json: doc });

// ---------------------------------------------------------- plugin kinds

// Run a plugin function: SDK errors pass through as contract errors; any other
// exception becomes a permanent error naming it (after logging the stack), so
// a JavaScript bug never takes the instance down. Promises are awaited
// (componentize-js runs the event loop until an exported call settles).
function guard(call, f) {
  const wrap = (e) => {
    if (e instanceof PluginError) return e;
    const name = e && e.name ? e.name : typeof e;
    const message = e && e.message ? e.message : String(e);
    log.error(`${call}: unexpected ${name}: ${message}\n${(e && e.stack) || ''}`);
    return new PermanentError(`${call}: unexpected ${name}: ${message}`);
  };
  let out;
  try {
    out = f();
  } catch (e) {
    throw wrap(e);
  }
  if (out && typeof out.then === 'function') {
    return out.then(
      (v) => v,
      (e) => {
        throw wrap(e);
      },
    );
  }
  return out;
}

// Apply `f` to a value or, when it is a promise, to what it resolves to.
function settle(v, f) {
  return v && typeof v.then === 'function' ? v.then(f) : f(v);
}

/** The object to export as `transformApi`:
 *
 *     export const transformApi = exportTransform({
 *       spec() { return spec('my-transform', '0.1.0', '...'); },
 *       open(config) { return { transform(batch) { ...; return { batch: out, errors } } } },
 *     });
 *
 * `check(config)` defaults to opening a transformer and dropping it. */
export function exportTransform(plugin) {
  class Transformer {
    constructor(inner) {
      this.inner = inner;
    }
    transform(input) {
      return guard('transform', () => this.inner.transform(input));
    }
  }
  return {
    Transformer,
    spec: () => plugin.spec(),
    check: (config) => guard('check', () => (plugin.check ? plugin.check(config) : settle(plugin.open(config), () => undefined))),
    open: (config) => settle(guard('open', () => plugin.open(config)), (inner) => new Transformer(inner)),
  };
}

/** The object to export as `destinationApi`:
 *
 *     export const destinationApi = exportDestination({
 *       spec() {...}, check(config) {...}, discover(config) { return [...] },
 *       open(config, target) { return { async write(batch) { return [...rowResults] } } },
 *     });
 */
export function exportDestination(plugin) {
  class Writer {
    constructor(inner) {
      this.inner = inner;
    }
    write(input) {
      return guard('write', () => this.inner.write(input));
    }
  }
  return {
    Writer,
    spec: () => plugin.spec(),
    check: (config) => guard('check', () => (plugin.check ? plugin.check(config) : undefined)),
    discover: (config) => guard('discover', () => (plugin.discover ? plugin.discover(config) : [])),
    open: (config, target) => settle(guard('open', () => plugin.open(config, target)), (inner) => new Writer(inner)),
  };
}

/** The name of a write mode ('upsert', 'append', ...); modes are already
 * strings in JavaScript. */
export const modeName = (mode) => mode;

/** `Retry-After` of a fetch Response in milliseconds (delay-seconds form),
 * or `defaultMs`. */
export function retryAfterMs(response, defaultMs = 1000) {
  const v = response.headers.get('retry-after');
  if (v === null) return defaultMs;
  const secs = Number(v.trim());
  return v.trim() !== '' && Number.isFinite(secs) && secs >= 0 ? Math.round(secs * 1000) : defaultMs;
}
