// A Sluice transform in JavaScript: start here.
//
// `sluice plugin new NAME --lang js --kind transform` writes this file into
// a new project, with the SDK beside it as ./sluice-sdk.js. Edit open()
// (config) and transform() (the rows), then
//
//     sluice plugin build      # -> dist/NAME.wasm
//     sluice plugin test .     # runs fixtures/*.json against it
// As written it lower-cases one text column named in the config,
// {"column": "email"}, and reports a row error for a value that is not text.

import * as sdk from './sluice-sdk.js';

// componentize-js looks for this name: the `transform-api` interface.
export const transformApi = sdk.exportTransform({
  spec() {
    return sdk.spec('my-transform', '0.1.0', 'A transform of one column (scaffolded: it lower-cases it)', {
      configSchema: {
        type: 'object',
        required: ['column'],
        additionalProperties: false,
        properties: { column: { type: 'string' } },
      },
    });
  },

  open(config) {
    // Config errors name the key; the host shows them before any row moves.
    const { column } = sdk.parseConfig(config, { required: ['column'], allowed: ['column'] });
    if (typeof column !== 'string') throw new sdk.ConfigError('`column` must be a column name');
    return {
      transform(batch) {
        const col = sdk.requireColumn(batch, column);
        const rows = [];
        const errors = [];
        batch.rows.forEach((row, index) => {
          const value = row[col];
          if (sdk.isNull(value)) {
            rows.push(row);
          } else if (value.tag === 'text') {
            const copy = row.slice();
            copy[col] = sdk.text(value.val.toLowerCase());
            rows.push(copy);
          } else {
            // A bad row is reported by its index and left out of the output.
            errors.push({ index, message: `\`${column}\` must be text, got ${sdk.typeName(value)}` });
          }
        });
        return { batch: { columns: batch.columns, rows }, errors };
      },
    };
  },
});
