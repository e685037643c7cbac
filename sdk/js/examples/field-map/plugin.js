// `js-field-map`: the first-party `field-map` transform
// (plugins/field-map/src/lib.rs), ported to JavaScript.
//
// Each output row is built from a list of field rules: copy a column under a
// new name, coerce its type, clean text (trim, lowercase, uppercase), or set
// a constant. A value that cannot be coerced rejects its row with a message
// naming the field; the other rows go on. The config grammar, the coercions
// and the reject messages are the Rust plugin's, so the three ports (Rust,
// Python, JavaScript) can be compared row for row (tests/tests/polyglot.rs)
// and benchmarked side by side (crates/bench/benches/polyglot.rs).
//
// Config:
//
//     {"fields": [
//         {"from": "email", "to": "Email", "clean": ["trim", "lowercase"]},
//         {"from": "ltv", "to": "LifetimeValue", "type": "float"},
//         {"to": "Source", "constant": "sluice"}
//     ]}
//
// `type` is one of text, integer, float, boolean, json; `clean` applies to
// text values, in order, after the coercion. A column named by two rules is
// read by both.
//
// JSON goes through the small parser below rather than JSON.parse, which
// cannot tell 1 from 1.0 and loses 64-bit integers: integers are BigInt,
// floats are numbers, as serde_json types them.

import * as sdk from './sluice-sdk.js';

const COERCE = { text: 'Text', integer: 'Integer', float: 'Float', boolean: 'Boolean', json: 'Json' };
const CLEAN = ['trim', 'lowercase', 'uppercase'];
const RULE_KEYS = ['from', 'to', 'type', 'clean', 'constant'];

// The grammars of Rust's `i64::from_str` and `f64::from_str`.
const INTEGER = /^[+-]?[0-9]+$/;
const FLOAT = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;
const TRUE = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE = new Set(['false', 'f', 'no', 'n', '0']);

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A value that cannot be coerced: its row is rejected with this message. */
class Reject extends Error {}

// ------------------------------------------------------------ whitespace

// Rust's `char::is_whitespace` (Unicode White_Space), what `str::trim`
// strips. JavaScript's `trim` differs (it strips U+FEFF, not U+0085).
function isSpace(c) {
  return (
    c === 32 || (c >= 9 && c <= 13) || c === 0x85 || c === 0xa0 || c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f ||
    c === 0x205f || c === 0x3000
  );
}

function trim(s) {
  let start = 0;
  let end = s.length;
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

const CLEANERS = {
  trim,
  lowercase: (s) => s.toLowerCase(),
  uppercase: (s) => s.toUpperCase(),
};

// ---------------------------------------------------- JSON as serde_json

/** Parse JSON the way serde_json does: integers that fit u64 or i64 are
 * BigInt, other numbers (and `-0`) are floats; no NaN or Infinity. */
export function parseJson(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 32 && c !== 9 && c !== 10 && c !== 13) break;
      i++;
    }
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const STRING = /"((?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*)"/y;
  let depth = 0;
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (++depth > 128) fail('recursion limit exceeded');
      i++;
      const out = c === '{' ? Object.create(null) : [];
      ws();
      if (text[i] === (c === '{' ? '}' : ']')) {
        i++;
      } else {
        for (;;) {
          if (c === '{') {
            ws();
            if (text[i] !== '"') fail('expected a key');
            const key = string();
            ws();
            if (text[i++] !== ':') fail('expected `:`');
            out[key] = value();
          } else {
            out.push(value());
          }
          ws();
          const next = text[i++];
          if (next === (c === '{' ? '}' : ']')) break;
          if (next !== ',') fail('expected `,`');
        }
      }
      depth--;
      return out;
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail('expected a value');
    i = NUMBER.lastIndex;
    const raw = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      const n = BigInt(raw);
      if (raw.startsWith('-')) {
        if (n !== 0n && n >= I64_MIN) return n;
      } else if (n <= U64_MAX) {
        return n;
      }
    }
    const f = Number(raw);
    if (!Number.isFinite(f)) fail('number out of range');
    return f;
  };
  const string = () => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) fail('invalid string');
    i = STRING.lastIndex;
    // serde_json refuses escapes of lone surrogates.
    if (/\\u[dD][89a-fA-F]/.test(m[0])) {
      const s = JSON.parse(m[0]);
      if (LONE_SURROGATE.test(s)) fail('lone surrogate');
      return s;
    }
    return m[1].includes('\\') ? JSON.parse(m[0]) : m[1];
  };
  const out = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return out;
}

/** The shortest round-trip digits of a finite, non-zero |f| and the exponent:
 * |f| == digits * 10 ** exp. */
function digits(f) {
  const [mantissa, exp] = Math.abs(f).toExponential().split('e');
  const d = mantissa.replace('.', '');
  return [d, Number(exp) - (d.length - 1)];
}

/** A finite number as serde_json writes a float (ryu): 1.0, 0.001, 1e16. */
export function ryu(f) {
  if (f === 0) return Object.is(f, -0) ? '-0.0' : '0.0';
  const sign = f < 0 ? '-' : '';
  const [d, k] = digits(f);
  const kk = d.length + k;
  if (k >= 0 && kk <= 16) return `${sign}${d}${'0'.repeat(k)}.0`;
  if (kk > 0 && kk <= 16) return `${sign}${d.slice(0, kk)}.${d.slice(kk)}`;
  if (kk > -5 && kk <= 0) return `${sign}0.${'0'.repeat(-kk)}${d}`;
  const mantissa = d.length === 1 ? d : `${d[0]}.${d.slice(1)}`;
  return `${sign}${mantissa}e${kk - 1}`;
}

// Sort keys by code point, as serde_json's BTreeMap does (JavaScript's
// default sort compares UTF-16 code units).
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let j = 0; j < Math.min(x.length, y.length); j++) {
    if (x[j] !== y[j]) return x[j].codePointAt(0) - y[j].codePointAt(0);
  }
  return x.length - y.length;
}

/** Compact JSON as serde_json writes it: keys sorted, floats by ryu. */
export function stringify(doc) {
  if (doc === null) return 'null';
  switch (typeof doc) {
    case 'boolean':
      return doc ? 'true' : 'false';
    case 'bigint':
      return doc.toString();
    case 'number':
      return Number.isFinite(doc) ? ryu(doc) : 'null';
    case 'string':
      return JSON.stringify(doc);
    default:
      if (Array.isArray(doc)) return `[${doc.map(stringify).join(',')}]`;
      return `{${Object.keys(doc)
        .sort(byCodePoint)
        .map((k) => `${JSON.stringify(k)}:${stringify(doc[k])}`)
        .join(',')}}`;
  }
}

/** `Value::to_json` of the Rust SDK, as a document for `stringify`. */
function toJson(v) {
  switch (v.tag) {
    case 'integer':
      return v.val;
    case 'float':
      return Number.isFinite(v.val) ? v.val : null;
    case 'decimal':
      try {
        const n = parseJson(v.val);
        return typeof n === 'bigint' || typeof n === 'number' ? n : v.val;
      } catch {
        return v.val;
      }
    case 'json':
      try {
        return parseJson(v.val);
      } catch {
        return v.val;
      }
    default:
      return sdk.toJson(v);
  }
}

// --------------------------------------------- Rust's text forms of values

/** `format!("{f}")` of an f64: plain notation, shortest digits. */
export function rustDisplay(f) {
  if (Number.isNaN(f)) return 'NaN';
  if (!Number.isFinite(f)) return f > 0 ? 'inf' : '-inf';
  if (f === 0) return Object.is(f, -0) ? '-0' : '0';
  const sign = f < 0 ? '-' : '';
  const [d, k] = digits(f);
  const kk = d.length + k;
  if (k >= 0) return `${sign}${d}${'0'.repeat(k)}`;
  if (kk > 0) return `${sign}${d.slice(0, kk)}.${d.slice(kk)}`;
  return `${sign}0.${'0'.repeat(-kk)}${d}`;
}

/** `format!("{f:?}")` of an f64: plain between 1e-4 and 1e16, else 1.5e-7. */
function rustDebugFloat(f) {
  if (!Number.isFinite(f)) return rustDisplay(f);
  if (f === 0 || (Math.abs(f) >= 1e-4 && Math.abs(f) < 1e16)) {
    const text = rustDisplay(f);
    return text.includes('.') ? text : `${text}.0`;
  }
  const [d, k] = digits(f);
  const mantissa = d.length === 1 ? d : `${d[0]}.${d.slice(1)}`;
  return `${f < 0 ? '-' : ''}${mantissa}e${d.length + k - 1}`;
}

const STR_ESCAPES = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\0': '\\0' };

function rustDebugStr(s) {
  let out = '"';
  for (const c of s) {
    const code = c.codePointAt(0);
    if (Object.hasOwn(STR_ESCAPES, c)) out += STR_ESCAPES[c];
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) out += `\\u{${code.toString(16)}}`;
    else out += c;
  }
  return `${out}"`;
}

/** The Rust SDK's `{:?}` of a value, as in the reject messages. */
export function rustDebug(v) {
  const name = `Value::${v.tag[0].toUpperCase()}${v.tag.slice(1)}`;
  switch (v.tag) {
    case 'null':
      return name;
    case 'float':
      return `${name}(${rustDebugFloat(v.val)})`;
    case 'text':
    case 'decimal':
    case 'json':
      return `${name}(${rustDebugStr(v.val)})`;
    case 'bytes':
      return `${name}([${Array.from(v.val).join(', ')}])`;
    default:
      return `${name}(${String(v.val)})`;
  }
}

/** `Value::write_text` of the Rust SDK. */
function writeText(v) {
  switch (v.tag) {
    case 'boolean':
      return v.val ? 'true' : 'false';
    case 'integer':
      return v.val.toString();
    case 'float':
      return rustDisplay(v.val);
    case 'text':
    case 'decimal':
    case 'json':
      return v.val;
    case 'bytes':
      return Array.from(v.val, (b) => b.toString(16).padStart(2, '0')).join('');
    case 'timestamp':
      return sdk.formatTimestamp(v.val);
    case 'date':
      return sdk.formatDate(v.val);
    default:
      return '';
  }
}

// ------------------------------------------------------------- coercions

function asI64(v) {
  switch (v.tag) {
    case 'integer':
      return v.val;
    case 'float': {
      if (!Number.isInteger(v.val)) return undefined;
      // `f as i64` saturates.
      const n = BigInt(v.val);
      return n < I64_MIN ? I64_MIN : n > I64_MAX ? I64_MAX : n;
    }
    case 'text':
    case 'decimal': {
      const s = trim(v.val);
      if (!INTEGER.test(s)) return undefined;
      const n = BigInt(s);
      return n >= I64_MIN && n <= I64_MAX ? n : undefined;
    }
    default:
      return undefined;
  }
}

function asF64(v) {
  switch (v.tag) {
    case 'integer':
      return Number(v.val);
    case 'float':
      return v.val;
    case 'text':
    case 'decimal': {
      const s = trim(v.val);
      if (!FLOAT.test(s)) return undefined;
      // Digits (or a point) after the sign: a number. Otherwise a word.
      const first = s.charCodeAt(s[0] === '+' || s[0] === '-' ? 1 : 0);
      if ((first >= 48 && first <= 57) || first === 46) return Number(s);
      if (/nan/i.test(s)) return NaN;
      return s[0] === '-' ? -Infinity : Infinity;
    }
    default:
      return undefined;
  }
}

/** A function coercing a non-null value to `target`, or throwing Reject. */
function coercer(target) {
  const fail = (v) => new Reject(`cannot convert ${rustDebug(v)} to ${COERCE[target]}`);
  switch (target) {
    case 'text':
      return (v) => (v.tag === 'text' ? v : sdk.text(writeText(v)));
    case 'integer':
      return (v) => {
        if (v.tag === 'integer') return v;
        const n = asI64(v);
        if (n === undefined) throw fail(v);
        return { tag: 'integer', val: n };
      };
    case 'float':
      return (v) => {
        if (v.tag === 'float') return v;
        const f = asF64(v);
        if (f === undefined) throw fail(v);
        return { tag: 'float', val: f };
      };
    case 'boolean':
      return (v) => {
        if (v.tag === 'boolean') return v;
        if (v.tag === 'integer') return { tag: 'boolean', val: v.val !== 0n };
        if (v.tag === 'text') {
          // Rust lower-cases ASCII only: other text never matches.
          const s = trim(v.val);
          const lower = /^[\x00-\x7f]*$/.test(s) ? s.toLowerCase() : s;
          if (TRUE.has(lower)) return { tag: 'boolean', val: true };
          if (FALSE.has(lower)) return { tag: 'boolean', val: false };
        }
        throw fail(v);
      };
    default:
      return (v) => ({ tag: 'json', val: stringify(toJson(v)) });
  }
}

/** A config constant as a value (field-map's `json_to_value`). */
function jsonToValue(doc) {
  if (doc === null) return sdk.nullValue();
  switch (typeof doc) {
    case 'boolean':
      return { tag: 'boolean', val: doc };
    case 'bigint':
      return doc >= I64_MIN && doc <= I64_MAX ? { tag: 'integer', val: doc } : { tag: 'float', val: Number(doc) };
    case 'number':
      return { tag: 'float', val: doc };
    case 'string':
      return { tag: 'text', val: doc };
    default:
      return { tag: 'json', val: stringify(doc) };
  }
}

// ------------------------------------------------------------------ rules

const configError = (where, message) => new sdk.ConfigError(`invalid config: ${where}: ${message}`);
const quoted = (keys) => keys.map((k) => `\`${k}\``).join(', ');

class Rule {
  constructor(doc, i) {
    const where = `fields[${i}]`;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw configError(where, 'expected an object with from, to, type, clean or constant');
    }
    for (const key of Object.keys(doc)) {
      if (!RULE_KEYS.includes(key)) throw configError(where, `unknown field \`${key}\`, expected one of ${quoted(RULE_KEYS)}`);
    }
    const from = doc.from ?? null;
    const to = doc.to ?? null;
    for (const [key, v] of [['from', from], ['to', to]]) {
      if (v !== null && typeof v !== 'string') throw configError(where, `\`${key}\` must be a string`);
    }
    const target = doc.type ?? null;
    if (target !== null && !Object.hasOwn(COERCE, target)) {
      throw configError(where, `unknown variant \`${target}\`, expected one of ${quoted(Object.keys(COERCE))}`);
    }
    const clean = 'clean' in doc ? doc.clean : [];
    if (!Array.isArray(clean)) throw configError(where, '`clean` must be a list');
    for (const c of clean) {
      if (!CLEAN.includes(c)) throw configError(where, `unknown variant \`${c}\`, expected one of ${quoted(CLEAN)}`);
    }
    // A null constant is no constant (as in the Rust plugin).
    const constant = doc.constant ?? null;

    const name = to ?? from;
    if (name === null) throw new sdk.ConfigError(`${where}: needs \`to\` (or \`from\`)`);
    if (from === null && constant === null) throw new sdk.ConfigError(`${where} (${name}): needs \`from\` or \`constant\``);
    this.name = name;
    this.from = from;
    this.constant = from === null ? jsonToValue(constant) : null;
    this.convert = this.converter(target, clean.map((c) => CLEANERS[c]));
  }

  // A function from a value to the output value (or Reject), or null when
  // the value passes unchanged.
  converter(target, cleaners) {
    const coerce = target === null ? null : coercer(target);
    if (coerce === null && cleaners.length === 0) return null;
    const prefix = `field \`${this.name}\`: `;
    return (input) => {
      let v = input;
      if (coerce !== null && v.tag !== 'null') {
        try {
          v = coerce(v);
        } catch (e) {
          if (e instanceof Reject) throw new Reject(prefix + e.message);
          throw e;
        }
      }
      if (cleaners.length !== 0 && v.tag === 'text') {
        let s = v.val;
        for (const clean of cleaners) s = clean(s);
        if (s !== v.val) v = { tag: 'text', val: s };
      }
      return v;
    };
  }
}

function parse(config) {
  let doc;
  try {
    doc = config.trim() === '' ? {} : parseJson(config);
  } catch (e) {
    throw new sdk.ConfigError(`invalid config: ${e.message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new sdk.ConfigError('invalid config: expected a JSON object');
  }
  for (const key of Object.keys(doc)) {
    if (key !== 'fields') throw new sdk.ConfigError(`invalid config: unknown field \`${key}\`, expected \`fields\``);
  }
  if (!('fields' in doc)) throw new sdk.ConfigError('invalid config: missing field `fields`');
  if (!Array.isArray(doc.fields)) throw new sdk.ConfigError('invalid config: `fields` must be a list');
  return doc.fields.map((r, i) => new Rule(r, i));
}

export const transformApi = sdk.exportTransform({
  spec() {
    return sdk.spec('js-field-map', '0.1.0', 'Renames, coerces, cleans and adds fields (JavaScript)', {
      configSchema: {
        type: 'object',
        required: ['fields'],
        additionalProperties: false,
        properties: {
          fields: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              properties: {
                from: { type: 'string' },
                to: { type: 'string' },
                type: { enum: Object.keys(COERCE) },
                clean: { type: 'array', items: { enum: CLEAN } },
                constant: {},
              },
            },
          },
        },
      },
    });
  },

  open(config) {
    const rules = parse(config);
    const columns = rules.map((r) => r.name);
    return {
      transform(batch) {
        // Per rule: the source column (-1 for a constant), the constant,
        // the conversion (null: the value passes unchanged).
        const width = rules.length;
        const cols = rules.map((rule) => {
          if (rule.from === null) return -1;
          const col = batch.columns.indexOf(rule.from);
          if (col < 0) throw new sdk.ConfigError(`column \`${rule.from}\` is not in the batch`);
          return col;
        });
        const constants = rules.map((rule) => rule.constant);
        const converts = rules.map((rule) => rule.convert);
        const rows = [];
        const errors = [];
        const n = batch.rows.length;
        for (let index = 0; index < n; index++) {
          const row = batch.rows[index];
          const mapped = new Array(width);
          try {
            for (let j = 0; j < width; j++) {
              const col = cols[j];
              const v = col >= 0 ? row[col] : constants[j];
              const convert = converts[j];
              mapped[j] = convert === null ? v : convert(v);
            }
          } catch (e) {
            if (!(e instanceof Reject)) throw e;
            errors.push({ index, message: e.message });
            continue;
          }
          rows.push(mapped);
        }
        return { batch: { columns, rows }, errors };
      },
    };
  },
});
