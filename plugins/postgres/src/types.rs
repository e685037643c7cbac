//! PostgreSQL types: how each column is fetched (binary or text) and what
//! `Value` / `FieldType` it becomes. Built-in types are known by OID; other
//! OIDs (domains, enums, extension types such as citext, arrays of those)
//! are looked up in pg_type once per connection.

use crate::conn::Connection;
use sluice_sdk::{FieldType, PluginError};
use std::collections::HashMap;

pub type Oid = u32;

/// How a column is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// Any type read as its text form: text, varchar, bpchar, name, citext,
    /// enums, and everything without a better mapping (time, interval,
    /// inet, money, ranges, composites...).
    Text,
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    /// An array of any element type, rendered as a JSON array.
    Array {
        elem: Elem,
        delim: u8,
    },
}

/// How an array element is rendered in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Bool,
    /// Integers, floats and numerics: JSON numbers (NaN and infinities as strings).
    Number,
    /// json/jsonb: embedded as JSON.
    Json,
    /// bytea: a lowercase hex string, like `Value::Bytes` in JSON.
    Bytea,
    /// Everything else: the element's text as a JSON string.
    String,
}

/// The kind of a built-in type, by its fixed OID.
pub fn builtin(oid: Oid) -> Option<Kind> {
    let array = |elem| Kind::Array { elem, delim: b',' };
    Some(match oid {
        16 => Kind::Bool,
        17 => Kind::Bytea,
        20 => Kind::Int8,
        21 => Kind::Int2,
        23 => Kind::Int4,
        26 => Kind::Oid,
        700 => Kind::Float4,
        701 => Kind::Float8,
        1700 => Kind::Numeric,
        1082 => Kind::Date,
        1114 => Kind::Timestamp,
        1184 => Kind::TimestampTz,
        2950 => Kind::Uuid,
        114 | 3802 => Kind::Json,
        // "char", name, text, int2vector, oidvector, unknown, bpchar,
        // varchar, time, interval, timetz. int2vector and oidvector are
        // category 'A' in pg_type but print as "1 2 3", not as arrays.
        18 | 19 | 25 | 22 | 30 | 705 | 1042 | 1043 | 1083 | 1186 | 1266 => Kind::Text,
        1000 => array(Elem::Bool),
        1001 => array(Elem::Bytea),
        1005 | 1007 | 1016 | 1028 | 1021 | 1022 | 1231 => array(Elem::Number),
        199 | 3807 => array(Elem::Json),
        // "char"[], name[], text[], bpchar[], varchar[], date[], time[],
        // timestamp[], timestamptz[], interval[], uuid[]
        1002 | 1003 | 1009 | 1014 | 1015 | 1182 | 1183 | 1115 | 1185 | 1187 | 2951 => {
            array(Elem::String)
        }
        _ => return None,
    })
}

impl Kind {
    /// Whether the column is fetched in binary: fixed-size numbers, dates
    /// and times, uuids and bytea are smaller and cheaper to decode that
    /// way. Everything else is fetched as text, which is exact (numeric),
    /// already what we emit (text, json) or parsed (arrays).
    pub fn binary(self) -> bool {
        matches!(
            self,
            Kind::Bool
                | Kind::Int2
                | Kind::Int4
                | Kind::Int8
                | Kind::Oid
                | Kind::Float4
                | Kind::Float8
                | Kind::Bytea
                | Kind::Date
                | Kind::Timestamp
                | Kind::TimestampTz
                | Kind::Uuid
        )
    }

    pub fn field_type(self) -> FieldType {
        match self {
            Kind::Bool => FieldType::Boolean,
            Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Oid => FieldType::Integer,
            Kind::Float4 | Kind::Float8 => FieldType::Float,
            Kind::Numeric => FieldType::Decimal,
            Kind::Text | Kind::Uuid => FieldType::Text,
            Kind::Bytea => FieldType::Bytes,
            Kind::Date => FieldType::Date,
            Kind::Timestamp | Kind::TimestampTz => FieldType::Timestamp,
            Kind::Json | Kind::Array { .. } => FieldType::Json,
        }
    }

    /// How a value of this kind renders inside a JSON array.
    fn as_elem(self) -> Elem {
        match self {
            Kind::Bool => Elem::Bool,
            Kind::Int2
            | Kind::Int4
            | Kind::Int8
            | Kind::Oid
            | Kind::Float4
            | Kind::Float8
            | Kind::Numeric => Elem::Number,
            Kind::Json => Elem::Json,
            Kind::Bytea => Elem::Bytea,
            _ => Elem::String,
        }
    }
}

/// What pg_type says about a non-built-in type.
struct TypeRow {
    typtype: String,
    category: String,
    elem: Oid,
    base: Oid,
    elem_delim: u8,
}

/// Domains and arrays nest; a few rounds of lookups resolve any real chain.
const MAX_LOOKUP_ROUNDS: usize = 8;

/// The kinds of `oids`, looking unknown OIDs up in pg_type (and caching
/// them on the connection).
pub fn resolve(conn: &mut Connection, oids: &[Oid]) -> Result<Vec<Kind>, PluginError> {
    let mut rows: HashMap<Oid, TypeRow> = HashMap::new();
    let mut pending: Vec<Oid> = oids
        .iter()
        .copied()
        .filter(|o| is_unknown(conn, *o))
        .collect();
    for _ in 0..MAX_LOOKUP_ROUNDS {
        pending.sort_unstable();
        pending.dedup();
        if pending.is_empty() {
            break;
        }
        let found = lookup(conn, &pending)?;
        pending = found
            .values()
            .flat_map(|row| [row.elem, row.base])
            .filter(|&o| {
                o != 0 && is_unknown(conn, o) && !rows.contains_key(&o) && !found.contains_key(&o)
            })
            .collect();
        rows.extend(found);
    }
    Ok(oids
        .iter()
        .map(|&oid| {
            let kind = kind_of(oid, &rows, &conn.type_cache, MAX_LOOKUP_ROUNDS);
            conn.type_cache.insert(oid, kind);
            kind
        })
        .collect())
}

fn is_unknown(conn: &Connection, oid: Oid) -> bool {
    builtin(oid).is_none() && !conn.type_cache.contains_key(&oid)
}

/// Redshift's own types (OIDs from the AWS JDBC driver's `Oid.java`;
/// `../shared/reference/warehouse-apis.md` §4.4), read as their text form:
/// GEOMETRY 3000 and GEOMETRYHEX 3999 (hex EWKB), GEOGRAPHY 3001, SUPER
/// 4000 (its text serialization), VARBYTE 6551 (hex digits). Seeded into
/// the connection's cache in the Redshift mode only: these OIDs mean
/// nothing in PostgreSQL, and the lookup would ask Redshift's pg_type for
/// them anyway.
pub const REDSHIFT_TEXT_TYPES: [Oid; 5] = [3000, 3001, 3999, 4000, 6551];

/// The Redshift mode's cache before any lookup.
pub fn redshift_type_cache() -> HashMap<Oid, Kind> {
    REDSHIFT_TEXT_TYPES
        .iter()
        .map(|&oid| (oid, Kind::Text))
        .collect()
}

fn kind_of(
    oid: Oid,
    rows: &HashMap<Oid, TypeRow>,
    cache: &HashMap<Oid, Kind>,
    depth: usize,
) -> Kind {
    if let Some(kind) = builtin(oid).or_else(|| cache.get(&oid).copied()) {
        return kind;
    }
    let Some(row) = rows.get(&oid).filter(|_| depth > 0) else {
        // Unknown to pg_type (dropped meanwhile) or absurdly nested: text is
        // always a faithful rendering.
        return Kind::Text;
    };
    if row.typtype == "d" && row.base != 0 {
        // A domain is fetched and rendered as its base type.
        return kind_of(row.base, rows, cache, depth - 1);
    }
    if row.category == "A" && row.elem != 0 {
        let elem = kind_of(row.elem, rows, cache, depth - 1).as_elem();
        return Kind::Array {
            elem,
            delim: row.elem_delim,
        };
    }
    Kind::Text
}

/// One pg_type query for `oids` (all numbers, so formatting them into the
/// SQL is safe).
fn lookup(conn: &mut Connection, oids: &[Oid]) -> Result<HashMap<Oid, TypeRow>, PluginError> {
    let list = oids
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // Redshift's pg_type predates `typcategory` (PostgreSQL 8.4); there an
    // array is what it was before: an element type and variable length.
    let category = if conn.redshift {
        "CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'A' ELSE '' END"
    } else {
        "t.typcategory"
    };
    let sql = format!(
        "SELECT t.oid, t.typtype, {category}, t.typelem, t.typbasetype, COALESCE(e.typdelim, ',') \
         FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem \
         WHERE t.oid IN ({list})"
    );
    let mut found = HashMap::new();
    for row in conn.simple_query(&sql)? {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let number = |i: usize| text(i).parse::<Oid>().unwrap_or(0);
        let delim = text(5).bytes().next().unwrap_or(b',');
        let type_row = TypeRow {
            typtype: text(1),
            category: text(2),
            elem: number(3),
            base: number(4),
            elem_delim: delim,
        };
        found.insert(number(0), type_row);
    }
    Ok(found)
}
