// A Sluice destination in JavaScript: start here.
//
// `sluice plugin new NAME --lang js --kind destination` writes this file
// into a new project, with the SDK beside it as ./sluice-sdk.js. Edit open()
// (config) and write() (the rows), then
//
//     sluice plugin build      # -> dist/NAME.wasm
//     sluice plugin test .     # runs fixtures/*.json against it
//
// As written it POSTs each batch as a JSON array of row objects to the `url`
// of its config, {"url": "https://example.com/hook"}. The operator must grant
// that host (the spec asks for `${config.url}`).

import * as sdk from './sluice-sdk.js';

function parse(config) {
  return sdk.parseConfig(config, { required: ['url'], allowed: ['url'] });
}

// componentize-js looks for this name: the `destination-api` interface.
export const destinationApi = sdk.exportDestination({
  spec() {
    return sdk.spec('my-destination', '0.1.0', 'POSTs rows as JSON', {
      configSchema: {
        type: 'object',
        required: ['url'],
        additionalProperties: false,
        properties: { url: { type: 'string', format: 'uri' } },
      },
      capabilities: ['${config.url}'],
      batchSize: 100,
    });
  },
  check(config) {
    parse(config);
  },
  discover() {
    // One object that takes any field, under whatever name a sync gives it.
    // List only the modes your API supports: `sluice validate` and `run`
    // refuse a sync whose mode is not here.
    const anything = { name: '*', type: 'any', nullable: true, required: false, identifier: true };
    return [{ name: 'events', fields: [anything], modes: ['upsert', 'insert', 'update', 'append'] }];
  },
  open(config) {
    const { url } = parse(config);
    return {
      // Exactly one result per row, in order. Requests are asynchronous; an
      // async write is fine (the call returns when the promise settles).
      async write(batch) {
        const rows = batch.rows.map((_, i) => sdk.rowObject(batch, i));
        // A timeout or a failed connection throws a RetryableError: the host
        // retries the call. (Also reached when the sandbox refuses the
        // request; the host then reports the missing grant.)
        const response = await sdk.postJson(url, rows, { timeoutMs: 30000 });
        // 2xx accepted; 429 (and 503 with Retry-After) rate-limited for the
        // time the API asked; other 5xx retryable; 401/403 fail the call as
        // an auth error; anything else rejected with the API's message.
        const result = response.rowResult();
        return batch.rows.map(() => result);
      },
    };
  },
});
