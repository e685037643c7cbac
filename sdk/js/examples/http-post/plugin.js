// `js-http-post`: POSTs each batch as one JSON document to a URL.
//
// The body is {"object", "mode", "identifier", "rows": [{column: value}, ...]}.
// A row whose identifier column is null is rejected on the spot and not sent.
// The receiver's answer decides the other rows' results:
//
// - 2xx: accepted;
// - 429 (and 503 with Retry-After): rate-limited, after `Retry-After`
//   seconds (1 s when absent);
// - other 5xx and 408: retryable, with the receiver's message;
// - 401/403: the whole call fails with an auth error;
// - other 3xx/4xx: rejected with the receiver's message
// (the SDK's `response.rowResult()`). Headers `x-ratelimit-remaining`,
// `-limit` and `-window-ms` in a response are reported to the host as the
// receiver's quota.
//
// A timeout or a connection failure fails the call as retryable. A request
// the sandbox refuses (the URL's host is not granted) fails the call, and
// the host names the grant that is missing.
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
    this.headers = { 'user-agent': `sluice-js-http-post/${VERSION}`, ...headers };
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
    const body = {
      object: this.target.object,
      mode: sdk.modeName(this.target.mode),
      identifier: this.target.identifier,
      rows,
    };
    // A timeout or a failed connection throws a RetryableError: the call
    // fails and the host retries it. The sandbox's refusal lands there too;
    // the host knows it was one and reports the missing grant.
    const response = await sdk.postJson(this.url, body, { headers: this.headers, timeoutMs: this.timeoutMs });
    this.reportQuota(response);
    return response.rowResult();
  }

  // A receiver that says how many calls are left in its window lets the
  // host pace the sync before it answers 429.
  reportQuota(response) {
    const remaining = response.header('x-ratelimit-remaining');
    const limit = response.header('x-ratelimit-limit');
    const windowMs = response.header('x-ratelimit-window-ms');
    if (remaining !== undefined && limit !== undefined && windowMs !== undefined) {
      sdk.reportQuota(Number(remaining), Number(limit), Number(windowMs));
    }
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
