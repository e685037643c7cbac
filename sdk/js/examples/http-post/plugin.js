// `js-http-post`: POSTs each batch as one JSON document to a URL.
//
// The body is {"object", "mode", "identifier", "rows": [{column: value}, ...]}.
// A row whose identifier column is null is rejected on the spot and not sent.
// The receiver's answer decides the other rows' results:
//
// - 2xx: accepted;
// - 429: rate-limited, after `Retry-After` seconds (1 s when absent);
// - 5xx: retryable, with the receiver's message;
// - 401/403: the whole call fails with an auth error;
// - other 3xx/4xx: rejected with the receiver's message.
//
// A connection failure makes the rows retryable. A request the sandbox
// refuses (the URL's host is not granted) fails the call, and the host names
// the grant that is missing.
//
// Config: {"url": "https://...", "headers": {"x-api-key": "..."}, "timeout_ms": 30000}

import * as sdk from './sluice-sdk.js';

const VERSION = '0.1.0';

function parse(config) {
  const doc = sdk.parseConfig(config, { required: ['url'], allowed: ['url', 'headers', 'timeout_ms'] });
  if (typeof doc.url !== 'string' || !/^https?:\/\//.test(doc.url)) {
    throw new sdk.ConfigError(`\`url\` must be http(s)://..., got \`${doc.url}\``);
  }
  const headers = doc.headers ?? {};
  if (typeof headers !== 'object' || Array.isArray(headers) || !Object.values(headers).every((v) => typeof v === 'string')) {
    throw new sdk.ConfigError('`headers` must be an object of strings');
  }
  const timeoutMs = doc.timeout_ms ?? 30000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new sdk.ConfigError('`timeout_ms` must be a positive integer');
  }
  return { url: doc.url, headers, timeoutMs };
}

class PostWriter {
  constructor({ url, headers, timeoutMs }, target) {
    this.url = url;
    this.headers = { 'user-agent': `sluice-js-http-post/${VERSION}`, ...headers, 'content-type': 'application/json' };
    this.timeoutMs = timeoutMs;
    this.target = target;
  }

  async write(batch) {
    const results = new Array(batch.rows.length);
    const ident = this.target.identifier ? sdk.requireColumn(batch, this.target.identifier) : undefined;
    const send = [];
    batch.rows.forEach((row, i) => {
      if (ident !== undefined && sdk.isNull(row[ident])) {
        results[i] = sdk.rejected(`row has no value for identifier \`${this.target.identifier}\``);
      } else {
        send.push(i);
      }
    });
    if (send.length) {
      const outcome = await this.post(send.map((i) => sdk.rowObject(batch, i)));
      for (const i of send) results[i] = outcome;
    }
    return results;
  }

  async post(rows) {
    const body = JSON.stringify({
      object: this.target.object,
      mode: sdk.modeName(this.target.mode),
      identifier: this.target.identifier,
      rows,
    });
    let response;
    try {
      response = await fetch(this.url, {
        method: 'POST',
        headers: this.headers,
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      // The sandbox's refusal and a connection failure both land here; the
      // host knows which: after a denial it reports the missing grant, so a
      // failed call is the honest answer for both.
      throw new sdk.RetryableError(`request to ${this.url} failed: ${e.message}`);
    }
    const status = response.status;
    const message = `HTTP ${status}: ${(await response.text()).slice(0, 300)}`;
    if (status >= 200 && status < 300) return sdk.accepted();
    if (status === 429) return sdk.rateLimited(sdk.retryAfterMs(response));
    if (status === 401 || status === 403) throw new sdk.AuthError(message);
    if (status >= 500) return sdk.retryable(message);
    return sdk.rejected(message);
  }
}

export const destinationApi = sdk.exportDestination({
  spec() {
    return sdk.spec('js-http-post', VERSION, 'POSTs each batch as JSON to a URL (JavaScript)', {
      configSchema: {
        type: 'object',
        required: ['url'],
        additionalProperties: false,
        properties: {
          url: { type: 'string', format: 'uri' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          timeout_ms: { type: 'integer', minimum: 1, default: 30000 },
        },
      },
      capabilities: ['${config.url}'],
      rateLimit: { requests: 50, perMs: 1000, concurrency: 4 },
      batchSize: 500,
    });
  },
  check(config) {
    parse(config);
  },
  discover(config) {
    parse(config);
    const anything = { name: '*', type: 'any', nullable: true, required: false, identifier: true };
    return [{ name: 'rows', fields: [anything], modes: ['upsert', 'update', 'insert', 'delete', 'append'] }];
  },
  open(config, target) {
    return new PostWriter(parse(config), target);
  },
});
