// A Sluice destination in JavaScript: start here.
//
// Copy this folder, rename the plugin in spec(), then edit open() (config)
// and write() (the rows). Build it with
//
//     sdk/js/build.sh path/to/your-plugin/plugin.js destination your-plugin.wasm
//
// The build puts the SDK beside this file as ./sluice-sdk.js.
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
      // Exactly one result per row, in order. `fetch` is asynchronous; an
      // async write is fine (the call returns when the promise settles).
      async write(batch) {
        const rows = batch.rows.map((_, i) => sdk.rowObject(batch, i));
        const all = (result) => batch.rows.map(() => result);
        let response;
        try {
          response = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(rows),
          });
        } catch (e) {
          // Also reached when the sandbox refuses the request; the host then
          // reports the missing grant.
          throw new sdk.RetryableError(`request to ${url} failed: ${e.message}`);
        }
        if (response.ok) return all(sdk.accepted());
        if (response.status === 429) return all(sdk.rateLimited(sdk.retryAfterMs(response)));
        const message = `HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`;
        return all(response.status >= 500 ? sdk.retryable(message) : sdk.rejected(message));
      },
    };
  },
});
