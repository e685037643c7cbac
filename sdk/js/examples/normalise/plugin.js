// `js-normalise`: tidy chosen text fields, row by row.
//
// For each configured field: trim whitespace, change case (lower, upper,
// title), then check that a required field is present and that the value
// matches an optional regular expression. A row that fails any check is
// reported as a row error (with its index and the reason) and left out of
// the output; the other rows pass through with their columns unchanged.
//
// Config:
//
//     {"fields": [
//         {"name": "email", "case": "lower", "required": true, "pattern": "^[^@ ]+@[^@ ]+$"},
//         {"name": "country", "case": "upper", "trim": true}
//     ]}

import * as sdk from './sluice-sdk.js';

const CASES = {
  lower: (s) => s.toLowerCase(),
  upper: (s) => s.toUpperCase(),
  // Upper-case the first letter of each word (words split on spaces and hyphens).
  title: (s) => s.toLowerCase().replace(/(^|[\s-])(\S)/g, (_, sep, c) => sep + c.toUpperCase()),
  none: (s) => s,
};
const FIELD_KEYS = ['name', 'case', 'trim', 'required', 'pattern'];

class FieldRule {
  constructor(doc, position) {
    const where = `\`fields[${position}]\``;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new sdk.ConfigError(`${where} must be an object like {"name": "email", "case": "lower"}`);
    }
    const unknown = Object.keys(doc).filter((k) => !FIELD_KEYS.includes(k)).sort();
    if (unknown.length) {
      throw new sdk.ConfigError(`${where}: unknown key \`${unknown[0]}\` (expected ${[...FIELD_KEYS].sort().join(', ')})`);
    }
    if (typeof doc.name !== 'string' || doc.name === '') {
      throw new sdk.ConfigError(`${where}.name must be a column name`);
    }
    this.name = doc.name;
    const c = doc.case ?? 'none';
    if (!Object.hasOwn(CASES, c)) {
      throw new sdk.ConfigError(`${where}.case must be one of ${Object.keys(CASES).join(', ')}, got \`${c}\``);
    }
    this.recase = CASES[c];
    this.trim = doc.trim ?? true;
    this.required = doc.required ?? false;
    this.pattern = undefined;
    if (doc.pattern !== undefined) {
      try {
        this.pattern = new RegExp(doc.pattern, 'u');
      } catch (e) {
        throw new sdk.ConfigError(`${where}.pattern is not a valid regular expression: ${e.message}`);
      }
    }
  }

  // The normalised value, or a string saying why the row fails.
  apply(value) {
    if (sdk.isNull(value)) {
      return this.required ? `\`${this.name}\` is required but null` : value;
    }
    if (value.tag !== 'text') {
      return `\`${this.name}\` must be text, got ${sdk.typeName(value)}`;
    }
    let s = this.trim ? value.val.trim() : value.val;
    s = this.recase(s);
    if (this.required && s === '') return `\`${this.name}\` is required but empty`;
    if (this.pattern && !this.pattern.test(s)) {
      return `\`${this.name}\` value ${JSON.stringify(s)} does not match /${this.pattern.source}/`;
    }
    return sdk.text(s);
  }
}

function parse(config) {
  const doc = sdk.parseConfig(config, { required: ['fields'], allowed: ['fields'] });
  if (!Array.isArray(doc.fields) || doc.fields.length === 0) {
    throw new sdk.ConfigError('`fields` must be a non-empty list');
  }
  return doc.fields.map((f, i) => new FieldRule(f, i));
}

export const transformApi = sdk.exportTransform({
  spec() {
    return sdk.spec('js-normalise', '0.1.0', 'Trims, re-cases and validates text fields (JavaScript)', {
      configSchema: {
        type: 'object',
        required: ['fields'],
        additionalProperties: false,
        properties: {
          fields: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              required: ['name'],
              additionalProperties: false,
              properties: {
                name: { type: 'string' },
                case: { enum: Object.keys(CASES) },
                trim: { type: 'boolean', default: true },
                required: { type: 'boolean', default: false },
                pattern: { type: 'string' },
              },
            },
          },
        },
      },
      batchSize: 1000,
    });
  },

  open(config) {
    const rules = parse(config);
    return {
      transform(batch) {
        const plan = rules.map((rule) => [sdk.requireColumn(batch, rule.name), rule]);
        const rows = [];
        const errors = [];
        batch.rows.forEach((input, index) => {
          const row = input.slice();
          for (const [col, rule] of plan) {
            const result = rule.apply(row[col]);
            if (typeof result === 'string') {
              errors.push({ index, message: result });
              return;
            }
            row[col] = result;
          }
          rows.push(row);
        });
        return { batch: { columns: batch.columns, rows }, errors };
      },
    };
  },
});
