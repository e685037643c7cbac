//! `webhook`: POSTs each batch as one JSON event to a URL.
//!
//! Requests are signed with Standard Webhooks v1 when a `whsec_` secret is
//! configured: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`.
//!
//! **What a receiver can rely on** (README, "The webhook destination"):
//! - bodies carry `Content-Length` (chunked only over `chunked_above_bytes`);
//! - `webhook-id` names one message: the same on every retry of it (inside
//!   the call, and when the host sends the same rows again), new for every
//!   other message, so a new run or a `--full-resync` never reuses one;
//! - `data.idempotency_keys[i]` belongs to `data.rows[i]`: a hash of the
//!   row as sent (its identifier included) and of the sync's target and
//!   this config. The same row content in the same sync always has the same
//!   key; a receiver that skips a row whose key equals the last key it
//!   applied *for that row's identifier* drops duplicates (retries,
//!   resyncs) but never a real change, even one back to an earlier value.
//!
//! 429, 502, 503 and 504 (and transport failures) are retried inside the
//! call while the wait is short (honouring `Retry-After`); longer waits are
//! handed back to the host as rate-limited or retryable row results. 410
//! Gone stops the sync; other 4xx reject the batch's rows with the
//! receiver's message.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use sluice_sdk::http::{self, Request, Response};
use sluice_sdk::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use twox_hash::{XxHash3_128, XxHash3_64};

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to POST.
    url: String,
    /// `whsec_` + base64 key; requests are unsigned without it.
    #[serde(default)]
    secret: Option<String>,
    /// The event's `type`.
    #[serde(default = "default_event_type")]
    event_type: String,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Retries inside one call for throttling and 5xx.
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    /// The longest wait spent inside a call; longer waits go back to the host.
    #[serde(default = "default_max_retry_wait_ms")]
    max_retry_wait_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    /// Bodies larger than this go chunked (`Transfer-Encoding: chunked`);
    /// smaller ones carry `Content-Length`. 0 sends every body chunked.
    #[serde(default = "default_chunked_above_bytes")]
    chunked_above_bytes: u64,
}

fn default_event_type() -> String {
    "sluice.rows".into()
}
fn default_max_retries() -> u32 {
    3
}
fn default_max_retry_wait_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    30_000
}
/// 16 MiB: far above a default batch (500 rows), so only unusually wide
/// batches go chunked unless asked.
fn default_chunked_above_bytes() -> u64 {
    16 << 20
}

impl Config {
    fn parse(text: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(text)?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(PluginError::Config(format!(
                "`url` must be http(s)://..., got `{}`",
                config.url
            )));
        }
        if let Some(secret) = &config.secret {
            signing_key(secret)?;
        }
        Ok(config)
    }
}

fn signing_key(secret: &str) -> Result<Vec<u8>, PluginError> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| PluginError::Config("`secret` must start with `whsec_`".into()))?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| {
            PluginError::Config(format!("`secret` is not valid base64 after `whsec_`: {e}"))
        })
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

pub struct Webhook;

impl Destination for Webhook {
    type Writer = WebhookWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new("webhook", env!("CARGO_PKG_VERSION"), "POSTs JSON batches to a URL, signed with Standard Webhooks")
            .capability("${config.url}")
            .batch_size(500)
            .config_schema(serde_json::json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "url": {"type": "string", "format": "uri", "description": "receiver URL"},
                    "secret": {"type": "string", "description": "Standard Webhooks secret (whsec_...)", "writeOnly": true},
                    "event_type": {"type": "string", "default": "sluice.rows"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "max_retries": {"type": "integer", "minimum": 0, "default": 3},
                    "max_retry_wait_ms": {"type": "integer", "minimum": 0, "default": 5000},
                    "timeout_ms": {"type": "integer", "minimum": 1, "default": 30000},
                    "chunked_above_bytes": {"type": "integer", "minimum": 0, "default": 16777216, "description": "bodies over this many bytes are sent chunked; smaller ones with Content-Length; 0 = always chunked"}
                }
            }))
    }

    fn check(config: &str) -> Result<(), PluginError> {
        Config::parse(config).map(|_| ())
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        Config::parse(config)?;
        // A webhook takes any fields; the object name becomes the event's `object`.
        Ok(vec![ObjectInfo {
            name: "events".into(),
            fields: vec![Field {
                name: "*".into(),
                type_: FieldType::Any,
                nullable: true,
                required: false,
                identifier: true,
            }],
            modes: vec![
                WriteMode::Upsert,
                WriteMode::Insert,
                WriteMode::Update,
                WriteMode::Delete,
                WriteMode::Append,
            ],
        }])
    }

    fn open(config: &str, target: WriteTarget) -> Result<WebhookWriter, PluginError> {
        let config = Config::parse(config)?;
        let key = config.secret.as_deref().map(signing_key).transpose()?;
        let writer_id = getrandom::u64().map_err(|e| {
            PluginError::Permanent(format!("no random source for message ids: {e}"))
        })?;
        Ok(WebhookWriter::new(config, key, target, writer_id))
    }
}

pub struct WebhookWriter {
    config: Config,
    key: Option<Vec<u8>>,
    key_seed: u64,
    target: WriteTarget,
    /// Random per writer (so per run): message ids never repeat across runs.
    writer_id: u64,
    /// Messages this writer has started.
    sequence: u64,
    /// The last message not yet answered for good: the host sending the
    /// same rows again is a retry of it, under the same id.
    pending: Option<Pending>,
}

struct Pending {
    data: Vec<u8>,
    id: String,
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Upsert => "upsert",
        WriteMode::Update => "update",
        WriteMode::Insert => "insert",
        WriteMode::Delete => "delete",
        WriteMode::Append => "append",
    }
}

fn unix_now() -> (u64, String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let micros = now.as_micros() as i64;
    (
        now.as_secs(),
        sluice_sdk::Value::Timestamp(micros)
            .to_json()
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// What one attempt means for the batch.
enum Attempt {
    Done(RowResult),
    Retry { wait_ms: u64, result: RowResult },
}

impl WebhookWriter {
    fn new(config: Config, key: Option<Vec<u8>>, target: WriteTarget, writer_id: u64) -> Self {
        let key_seed = key_seed(&config, &target);
        WebhookWriter {
            config,
            key,
            key_seed,
            target,
            writer_id,
            sequence: 0,
            pending: None,
        }
    }

    /// The event's `data`, serialized straight into bytes: the same bytes as
    /// `serde_json::to_vec` of the `json!` object (keys in `serde_json::Map`
    /// order, rows as `Batch::row_json`), without building a
    /// `serde_json::Value` tree per row. Each row's idempotency key hashes
    /// the bytes just written for it.
    fn data(&self, batch: &Batch) -> Vec<u8> {
        let (rows, spans) = rows_json(batch);
        let mut keys = Vec::with_capacity(spans.len() * 35 + 2);
        keys.push(b'[');
        for (i, span) in spans.into_iter().enumerate() {
            if i > 0 {
                keys.push(b',');
            }
            let key = XxHash3_128::oneshot_with_seed(self.key_seed, &rows[span]);
            keys.extend_from_slice(format!("\"{key:032x}\"").as_bytes());
        }
        keys.push(b']');
        let data = serde_json::json!({
            "object": self.target.object,
            "mode": mode_name(self.target.mode),
            "identifier": self.target.identifier,
            "idempotency_keys": serde_json::Value::Null,
            "rows": serde_json::Value::Null,
        });
        let mut data_bytes = Vec::with_capacity(rows.len() + keys.len() + 256);
        write_object(
            &mut data_bytes,
            &data,
            &[("idempotency_keys", &keys), ("rows", &rows)],
        );
        data_bytes
    }

    /// The id of the message carrying `data`: the pending message's when
    /// these are the same rows again (the host retrying them), else a new
    /// one. Comparing bytes costs far less than hashing them.
    fn message_id(&mut self, data: &[u8]) -> String {
        if let Some(p) = &self.pending {
            if p.data == data {
                return p.id.clone();
            }
        }
        self.sequence += 1;
        let id = format!("msg_{:016x}{:08x}", self.writer_id, self.sequence);
        self.pending = Some(Pending {
            data: data.to_vec(),
            id: id.clone(),
        });
        id
    }

    /// The whole event around `data`.
    fn envelope(&self, data: &[u8]) -> Vec<u8> {
        let (_, timestamp) = unix_now();
        let envelope = serde_json::json!({
            "type": self.config.event_type,
            "timestamp": timestamp,
            "data": serde_json::Value::Null,
        });
        let mut body = Vec::with_capacity(data.len() + 256);
        write_object(&mut body, &envelope, &[("data", data)]);
        body
    }

    fn post(&self, id: &str, body: &[u8]) -> Result<Response, http::HttpError> {
        let (ts, _) = unix_now();
        let mut req = Request::post(&self.config.url)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .header("webhook-id", id)
            .header("webhook-timestamp", &ts.to_string())
            .header(
                "user-agent",
                concat!("sluice-webhook/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.key {
            req = req.header("webhook-signature", &sign(key, id, ts, body));
        }
        for (name, value) in &self.config.headers {
            req = req.header(name, value);
        }
        let chunked = body.len() as u64 > self.config.chunked_above_bytes;
        req.body_bytes("application/json", body.to_vec())
            .chunked(chunked)
            .send()
    }

    fn classify(
        &self,
        response: Result<Response, http::HttpError>,
    ) -> Result<Attempt, PluginError> {
        let response = match response {
            Ok(r) => r,
            Err(e @ http::HttpError::Transport(_)) => {
                return Ok(Attempt::Retry {
                    wait_ms: 1000,
                    result: RowResult::Retryable(e.to_string()),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let status = response.status;
        let message = || {
            format!(
                "HTTP {status}: {}",
                response.text().chars().take(300).collect::<String>()
            )
        };
        Ok(match status {
            200..=299 => Attempt::Done(RowResult::Accepted),
            410 => {
                return Err(PluginError::Permanent(format!(
                    "receiver is gone (410); disable this destination: {}",
                    message()
                )))
            }
            401 | 403 => return Err(PluginError::Auth(message())),
            429 | 503 => {
                let wait_ms = response.retry_after_ms().unwrap_or(1000);
                Attempt::Retry {
                    wait_ms,
                    result: RowResult::RateLimited(wait_ms),
                }
            }
            500..=599 => {
                let wait_ms = response.retry_after_ms().unwrap_or(1000);
                Attempt::Retry {
                    wait_ms,
                    result: RowResult::Retryable(message()),
                }
            }
            300..=399 => Attempt::Done(RowResult::Rejected(format!(
                "{}; redirects are not followed",
                message()
            ))),
            _ => Attempt::Done(RowResult::Rejected(message())),
        })
    }
}

/// The seed of every idempotency key of one writer: what of the sync this
/// plugin sees (target and config; the secret and extra headers are not
/// content and stay out).
fn key_seed(config: &Config, target: &WriteTarget) -> u64 {
    let seed = serde_json::json!({
        "url": config.url,
        "event_type": config.event_type,
        "object": target.object,
        "mode": mode_name(target.mode),
        "identifier": target.identifier,
    });
    XxHash3_64::oneshot(seed.to_string().as_bytes())
}

/// Serialize the object `map` (compact, in its own key order) with the
/// values of the keys in `raw` replaced by their already serialized JSON.
fn write_object(out: &mut Vec<u8>, map: &serde_json::Value, raw: &[(&str, &[u8])]) {
    let map = map.as_object().expect("an object");
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        match raw.iter().find(|(k, _)| k == key) {
            Some((_, json)) => out.extend_from_slice(json),
            None => {
                let _ = serde_json::to_writer(&mut *out, value);
            }
        }
    }
    out.push(b'}');
}

/// `[row_json(0), row_json(1), ...]` serialized, written value by value,
/// and where each row's bytes are.
fn rows_json(batch: &Batch) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    // The keys in the order (and with the last-wins duplicates) of the
    // `serde_json::Map` that `row_json` collects: (column index, "key":).
    let order: serde_json::Map<String, serde_json::Value> = batch
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), serde_json::Value::from(i)))
        .collect();
    let keys: Vec<(usize, Vec<u8>)> = order
        .iter()
        .map(|(name, i)| {
            let mut key = serde_json::to_vec(name).unwrap_or_default();
            key.push(b':');
            (i.as_u64().unwrap_or_default() as usize, key)
        })
        .collect();
    let mut out = Vec::with_capacity(batch.len() * (64 + keys.len() * 24) + 2);
    let mut spans = Vec::with_capacity(batch.len());
    out.push(b'[');
    for (r, row) in batch.rows.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        let start = out.len();
        if row.len() < batch.columns.len() {
            // A short row (not sent by well-behaved sources): the general path.
            let _ = serde_json::to_writer(&mut out, &serde_json::Value::Object(batch.row_json(r)));
        } else {
            out.push(b'{');
            for (k, (column, key)) in keys.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key);
                write_value(&mut out, &row[*column]);
            }
            out.push(b'}');
        }
        spans.push(start..out.len());
    }
    out.push(b']');
    (out, spans)
}

/// One value as `Value::to_json` would serialize, without the detour for
/// the common scalar types, except that a decimal keeps every digit the
/// source gave it.
fn write_value(out: &mut Vec<u8>, value: &sluice_sdk::Value) {
    use sluice_sdk::Value as V;
    let _ = match value {
        V::Null => serde_json::to_writer(&mut *out, &()),
        V::Boolean(b) => serde_json::to_writer(&mut *out, b),
        V::Integer(i) => serde_json::to_writer(&mut *out, i),
        V::Text(s) => serde_json::to_writer(&mut *out, s.as_str()),
        V::Timestamp(us) if sluice_sdk::write_timestamp_json(out, *us) => Ok(()),
        // `to_json` goes through f64 (serde_json without arbitrary precision),
        // which rounds a NUMERIC(38) or DECIMAL(65) to 17 digits; the digits
        // are written as they are instead, a JSON number any consumer with a
        // big-number parser reads exactly.
        V::Decimal(s) if sluice_sdk::is_json_number(s) => {
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        other => serde_json::to_writer(&mut *out, &other.to_json()),
    };
}

impl Writer for WebhookWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let data = self.data(&batch);
        let id = self.message_id(&data);
        let body = self.envelope(&data);
        let mut attempt = 0;
        let result = loop {
            match self.classify(self.post(&id, &body))? {
                Attempt::Done(result) => {
                    // Answered for good: the next rows are a new message.
                    self.pending = None;
                    break result;
                }
                Attempt::Retry { wait_ms, result } => {
                    if attempt >= self.config.max_retries || wait_ms > self.config.max_retry_wait_ms
                    {
                        break result;
                    }
                    attempt += 1;
                    sluice_sdk::warn!(
                        "webhook: attempt {attempt} got {result:?}; retrying in {wait_ms} ms"
                    );
                    http::sleep(Duration::from_millis(wait_ms));
                }
            }
        };
        Ok(vec![result; batch.len()])
    }
}

sluice_sdk::export_destination!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // Test vector from the Standard Webhooks reference libraries.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn decimals_keep_every_digit_and_only_json_numbers_are_written_raw() {
        use sluice_sdk::Value as V;
        let big = "-12345678901234567890123456789012345.123456789012345678901234567890";
        let batch = Batch {
            columns: vec!["d".into()],
            rows: [
                big, "12.50", "0", "1e-7", "NaN", "01", "1.", ".5", "-", "1e",
            ]
            .iter()
            .map(|d| vec![V::Decimal((*d).into())])
            .collect(),
        };
        let (bytes, _) = rows_json(&batch);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(&format!(r#"{{"d":{big}}}"#)), "{text}");
        assert!(text.contains(r#"{"d":12.50}"#), "{text}");
        assert!(text.contains(r#"{"d":1e-7}"#), "{text}");
        // Not JSON numbers: as `to_json` renders them, never raw.
        for bad in ["NaN", "01", "1.", ".5", "-", "1e"] {
            assert!(
                !text.contains(&format!(r#"{{"d":{bad}}}"#)),
                "{bad}: {text}"
            );
        }
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.len(), 10);
    }

    #[test]
    fn payload_bytes_match_serializing_row_json() {
        use sluice_sdk::Value as V;
        let batch = Batch {
            columns: vec![
                "z".into(),
                "a \"q\"".into(),
                "m".into(),
                "a \"q\"".into(),
                "é".into(),
            ],
            rows: vec![
                vec![
                    V::Integer(-7),
                    V::Text("x\n\u{1}ü".into()),
                    V::Null,
                    V::Boolean(true),
                    V::Decimal("12.5".into()),
                ],
                vec![
                    V::Float(0.1),
                    V::Timestamp(1_700_000_000_123_456),
                    V::Json(r#"{"b":[1,2]}"#.into()),
                    V::Bytes(vec![0, 255]),
                    V::Date(19000),
                ],
                vec![V::Decimal("NaN".into()), V::Text(String::new())],
            ],
        };
        let writer = writer(r#"{"url":"https://x"}"#, "o\"bj", 1);
        let data_bytes = writer.data(&batch);
        let body = writer.envelope(&data_bytes);
        let rows: Vec<serde_json::Value> = (0..batch.len())
            .map(|i| serde_json::Value::Object(batch.row_json(i)))
            .collect();
        let (rows_bytes, spans) = rows_json(&batch);
        assert_eq!(
            String::from_utf8(rows_bytes.clone()).unwrap(),
            serde_json::to_string(&rows).unwrap()
        );
        // Each row's key hashes exactly that row's bytes.
        let keys: Vec<String> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&rows_bytes[s.clone()]).unwrap(),
                    rows[i]
                );
                format!(
                    "{:032x}",
                    XxHash3_128::oneshot_with_seed(writer.key_seed, &rows_bytes[s.clone()])
                )
            })
            .collect();
        let data = serde_json::json!({"object": "o\"bj", "mode": "upsert", "identifier": "id", "idempotency_keys": keys, "rows": rows});
        assert_eq!(
            String::from_utf8(data_bytes).unwrap(),
            serde_json::to_string(&data).unwrap()
        );
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let expected = serde_json::to_vec(&serde_json::json!({
            "type": "sluice.rows", "timestamp": parsed["timestamp"], "data": data,
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    fn writer(config: &str, object: &str, writer_id: u64) -> WebhookWriter {
        WebhookWriter::new(
            Config::parse(config).unwrap(),
            None,
            WriteTarget {
                object: object.into(),
                mode: WriteMode::Upsert,
                identifier: "id".into(),
            },
            writer_id,
        )
    }

    fn one_row(id: i64, name: &str) -> Batch {
        Batch {
            columns: vec!["id".into(), "name".into()],
            rows: vec![vec![
                sluice_sdk::Value::Integer(id),
                sluice_sdk::Value::Text(name.into()),
            ]],
        }
    }

    fn key_of(writer: &WebhookWriter, batch: &Batch) -> String {
        let data: serde_json::Value = serde_json::from_slice(&writer.data(batch)).unwrap();
        data["idempotency_keys"][0].as_str().unwrap().to_string()
    }

    #[test]
    fn a_message_keeps_its_id_until_answered_and_ids_never_repeat_across_writers() {
        let mut w = writer(r#"{"url":"https://x"}"#, "people", 7);
        let first = w.data(&one_row(1, "ada"));
        let id = w.message_id(&first);
        assert_eq!(id, "msg_000000000000000700000001");
        // The host sends the same rows again: a retry, the same id.
        assert_eq!(w.message_id(&first), id);
        // Other rows: a new message.
        let second = w.data(&one_row(2, "grace"));
        let next = w.message_id(&second);
        assert_ne!(next, id);
        // Once answered, even the same rows again are a new message.
        w.pending = None;
        assert_ne!(w.message_id(&second), next);
        // Another writer (another run) never reuses an id.
        let mut other = writer(r#"{"url":"https://x"}"#, "people", 8);
        assert_ne!(other.message_id(&first), id);
    }

    #[test]
    fn idempotency_keys_follow_row_content_and_the_sync_not_the_message() {
        let w = writer(r#"{"url":"https://x"}"#, "people", 1);
        let same_run_later = writer(r#"{"url":"https://x"}"#, "people", 2);
        let ada = one_row(1, "ada");
        assert_eq!(key_of(&w, &ada), key_of(&same_run_later, &ada));
        assert_eq!(key_of(&w, &ada).len(), 32);
        assert_ne!(key_of(&w, &ada), key_of(&w, &one_row(1, "ada lovelace")));
        assert_ne!(key_of(&w, &ada), key_of(&w, &one_row(2, "ada")));
        let other_object = writer(r#"{"url":"https://x"}"#, "leads", 1);
        assert_ne!(key_of(&w, &ada), key_of(&other_object, &ada));
        let other_event = writer(r#"{"url":"https://x","event_type":"t"}"#, "people", 1);
        assert_ne!(key_of(&w, &ada), key_of(&other_event, &ada));
        // The secret is not content: rotating it keeps the keys.
        let signed = WebhookWriter::new(
            Config::parse(
                r#"{"url":"https://x","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#,
            )
            .unwrap(),
            None,
            w.target.clone(),
            1,
        );
        assert_eq!(key_of(&w, &ada), key_of(&signed, &ada));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(matches!(
            Config::parse(r#"{"url":"ftp://x"}"#),
            Err(PluginError::Config(_))
        ));
        assert!(matches!(
            Config::parse(r#"{"url":"https://x","secret":"abc"}"#),
            Err(PluginError::Config(_))
        ));
        assert!(
            matches!(Config::parse(r#"{"url":"https://x","bogus":1}"#), Err(PluginError::Config(m)) if m.contains("bogus"))
        );
    }
}
