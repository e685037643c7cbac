//! Cassettes: a plugin's HTTP exchanges recorded once and replayed offline.
//!
//! `sluice plugin test --record FILE` runs the plugin against the live (or
//! emulated) API through the sandbox's `wasi:http` hook in
//! [`HttpMode::Record`](crate::sandbox::http::HttpMode) and saves
//! every exchange, in order; `--replay FILE` serves the responses from the
//! file instead of the network ([`HttpMode::Replay`]), so a connector's tests
//! need no network and give the same results every time.
//!
//! - **Redaction.** Before an exchange is stored, and before a replayed
//!   request is compared, secrets are replaced by `<redacted>`: the values of
//!   headers named `authorization`, `proxy-authorization`, `cookie`,
//!   `set-cookie` or like token/secret/key/password/signature; the values of
//!   URL query parameters named like those; and, anywhere in the URL, headers
//!   and bodies, every config value that is secret (see [`secret_values`]).
//!   Response bodies are redacted too, and a value a response hands out
//!   under a secret-looking name (an OAuth token response's `access_token`,
//!   `refresh_token`, `id_token`, as JSON or as a form) is learned: it is
//!   redacted in that response and in every later request and response.
//! - **Size.** A request body is read into the cassette only up to
//!   [`MAX_RECORDED_BODY`]; a larger one (a streamed upload) fails its
//!   request with an error naming the limit instead of filling the host's
//!   memory. Response bodies are bounded by the instance's response limit.
//! - **Matching.** Replay serves interactions strictly in recorded order. The
//!   next request must have the recorded method, URL and body (after
//!   redaction); anything else is a replay failure that names what was
//!   expected, and the plugin gets a transport error. Interactions left
//!   unplayed at the end are failures too.
//! - **Time.** Recording and replay pin the plugin's wall clock to the
//!   instant the cassette was recorded, so a plugin that puts the time in a
//!   body (webhook's `timestamp`) sends the same bytes on replay.
//!
//! [`HttpMode::Replay`]: crate::sandbox::http::HttpMode::Replay

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const FORMAT: u32 = 1;

/// The largest request body recorded to or replayed from a cassette.
pub const MAX_RECORDED_BODY: usize = 64 << 20;
pub use super::scrub::REDACTED;

/// A cassette file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cassette {
    pub cassette_version: u32,
    /// Milliseconds since the Unix epoch: the plugin's (frozen) wall clock
    /// while recording and replaying.
    pub recorded_at_ms: u64,
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interaction {
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Body,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Body,
}

/// A body: UTF-8 text as is, anything else as hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    Text(String),
    Hex(String),
}

impl Body {
    pub fn from_bytes(bytes: &[u8]) -> Body {
        match std::str::from_utf8(bytes) {
            Ok(s) => Body::Text(s.to_string()),
            Err(_) => Body::Hex(hex::encode(bytes)),
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Body::Text(s) => Ok(s.as_bytes().to_vec()),
            Body::Hex(h) => hex::decode(h).context("a cassette body is not valid hex"),
        }
    }

    fn len(&self) -> usize {
        match self {
            Body::Text(s) => s.len(),
            Body::Hex(h) => h.len() / 2,
        }
    }
}

impl Cassette {
    pub fn new(recorded_at: Duration) -> Self {
        Cassette {
            cassette_version: FORMAT,
            recorded_at_ms: recorded_at.as_millis() as u64,
            interactions: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Cassette> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cassette {}", path.display()))?;
        let c: Cassette = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid cassette", path.display()))?;
        if c.cassette_version != FORMAT {
            bail!(
                "cassette {} has version {}, this sluice reads version {FORMAT}",
                path.display(),
                c.cassette_version
            );
        }
        Ok(c)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing cassette {}", path.display()))
    }

    /// The frozen wall clock.
    pub fn clock(&self) -> Duration {
        Duration::from_millis(self.recorded_at_ms)
    }
}

/// What to hide in a cassette.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Secret values, longest first, replaced wherever they appear.
    secrets: Vec<String>,
    /// Secret values learned from responses while recording (tokens an API
    /// handed out), replaced like `secrets`.
    learned: std::sync::Arc<Mutex<Vec<String>>>,
}

/// Whether a header, query parameter or config key name looks secret.
pub fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || [
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "signature",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// Secret values of a plugin config: strings under keys named like
/// [`secret_name`], or under properties its schema marks `writeOnly`,
/// `format: password` or `x-secret` (at any depth). Values shorter than 6
/// characters are not treated as secrets, so redaction cannot mangle
/// ordinary words.
pub fn secret_values(config: &serde_json::Value, schema: &serde_json::Value) -> Vec<String> {
    fn marked(schema: Option<&serde_json::Value>) -> bool {
        schema.is_some_and(|s| {
            s.get("writeOnly") == Some(&true.into())
                || s.get("x-secret") == Some(&true.into())
                || s.get("format").and_then(|f| f.as_str()) == Some("password")
        })
    }
    fn walk(
        value: &serde_json::Value,
        schema: Option<&serde_json::Value>,
        secret: bool,
        out: &mut Vec<String>,
    ) {
        match value {
            serde_json::Value::String(s) if secret && s.len() >= 6 => out.push(s.clone()),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let sub = schema
                        .and_then(|s| s.get("properties"))
                        .and_then(|p| p.get(k));
                    walk(v, sub, secret || secret_name(k) || marked(sub), out);
                }
            }
            serde_json::Value::Array(items) => {
                let sub = schema.and_then(|s| s.get("items"));
                for v in items {
                    walk(v, sub, secret, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(config, Some(schema), false, &mut out);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Self {
        Redactor {
            secrets,
            learned: Default::default(),
        }
    }

    pub fn text(&self, text: &str) -> String {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in self.secrets.iter().chain(learned.iter()) {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// A response body, after learning the secrets it hands out.
    pub fn response_body(&self, bytes: &[u8]) -> Body {
        if let Ok(text) = std::str::from_utf8(bytes) {
            self.learn(handed_out_secrets(text));
        }
        self.body(bytes)
    }

    fn learn(&self, found: Vec<String>) {
        if found.is_empty() {
            return;
        }
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.extend(found);
        // Longest first, so a secret containing another is hidden whole.
        learned.sort_by_key(|s| std::cmp::Reverse(s.len()));
        learned.dedup();
    }

    pub fn url(&self, url: &str) -> String {
        let url = self.text(url);
        let Ok(mut parsed) = url::Url::parse(&url) else {
            return url;
        };
        if parsed.query().is_none() {
            return url;
        }
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_name(&k) {
                    REDACTED.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        parsed.to_string()
    }

    pub fn headers(&self, headers: &http::HeaderMap) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, value) in headers {
            let value = if secret_name(name.as_str()) {
                REDACTED.to_string()
            } else {
                self.text(&String::from_utf8_lossy(value.as_bytes()))
            };
            out.entry(name.as_str().to_string())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value)
                })
                .or_insert(value);
        }
        out
    }

    pub fn body(&self, bytes: &[u8]) -> Body {
        match Body::from_bytes(bytes) {
            Body::Text(t) => Body::Text(self.text(&t)),
            hex => hex,
        }
    }
}

/// Collects interactions while recording.
#[derive(Debug)]
pub struct Recorder {
    pub redactor: Redactor,
    cassette: Mutex<Cassette>,
}

impl Recorder {
    pub fn new(redactor: Redactor, recorded_at: Duration) -> Self {
        Recorder {
            redactor,
            cassette: Mutex::new(Cassette::new(recorded_at)),
        }
    }

    pub fn clock(&self) -> Duration {
        self.cassette
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clock()
    }

    pub fn push(&self, interaction: Interaction) {
        self.cassette
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .interactions
            .push(interaction);
    }

    /// What was recorded so far.
    pub fn cassette(&self) -> Cassette {
        self.cassette
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serves a cassette's responses in order.
#[derive(Debug)]
pub struct Replayer {
    pub redactor: Redactor,
    cassette: Cassette,
    state: Mutex<ReplayState>,
}

#[derive(Debug, Default)]
struct ReplayState {
    next: usize,
    failures: Vec<String>,
}

impl Replayer {
    pub fn new(cassette: Cassette, redactor: Redactor) -> Self {
        Replayer {
            redactor,
            cassette,
            state: Mutex::default(),
        }
    }

    pub fn clock(&self) -> Duration {
        self.cassette.clock()
    }

    /// The recorded response for the next request, or why there is none.
    pub fn next(&self, method: &str, url: &str, body: &Body) -> Result<RecordedResponse, String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = state.next;
        let outcome = match self.cassette.interactions.get(n) {
            None => Err(format!(
                "replay: unexpected request #{} {method} {url}: the cassette has only {} interaction(s)",
                n + 1,
                self.cassette.interactions.len()
            )),
            Some(i) if i.request.method != method || i.request.url != url => Err(format!(
                "replay: request #{} is {method} {url}, but the cassette expects {} {}",
                n + 1,
                i.request.method,
                i.request.url
            )),
            Some(i) if &i.request.body != body => Err(format!(
                "replay: request #{} {method} {url} has a different body ({} bytes) from the \
                 recorded one ({} bytes); first difference at byte {}",
                n + 1,
                body.len(),
                i.request.body.len(),
                first_difference(&i.request.body, body)
            )),
            Some(i) => Ok(i.response.clone()),
        };
        match &outcome {
            Ok(_) => state.next += 1,
            Err(why) => state.failures.push(why.clone()),
        }
        outcome
    }

    /// The mismatches since the last call (each also failed its request).
    pub fn take_failures(&self) -> Vec<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.failures)
    }

    /// Interactions never played, if any: replay must use the whole cassette.
    pub fn unplayed(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.cassette.interactions.len().saturating_sub(state.next);
        let i = self.cassette.interactions.get(state.next)?;
        Some(format!(
            "replay: {left} recorded interaction(s) were never requested, starting with {} {}",
            i.request.method, i.request.url
        ))
    }
}

/// String values under secret-looking names in a JSON or form-encoded body
/// (`{"access_token": "…"}`, `access_token=…&expires_in=3600`), at least six
/// characters long like config secrets.
fn handed_out_secrets(text: &str) -> Vec<String> {
    fn walk(value: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) if secret && s.len() >= 6 => out.push(s.clone()),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(v, secret || handed_out_name(k), out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, secret, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => walk(&json, false, &mut out),
        Err(_) if text.contains('=') && !text.contains(char::is_whitespace) => {
            for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
                if handed_out_name(&k) && v.len() >= 6 {
                    out.push(v.into_owned());
                }
            }
        }
        Err(_) => {}
    }
    out
}

/// A response field holding a secret: named like [`secret_name`], but not
/// one that describes a secret (`token_type: Bearer`).
fn handed_out_name(name: &str) -> bool {
    secret_name(name) && !name.to_ascii_lowercase().ends_with("type")
}

fn first_difference(a: &Body, b: &Body) -> usize {
    let (a, b) = (
        a.to_bytes().unwrap_or_default(),
        b.to_bytes().unwrap_or_default(),
    );
    a.iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_secret_values_by_name_and_schema() {
        let config = json!({"url": "https://x", "api_token": "tok-123456", "nested": {"password": "hunter22"}, "hook": "whsec_abcdef", "short_key": "ab"});
        let schema = json!({"properties": {"hook": {"type": "string", "writeOnly": true}}});
        let mut got = secret_values(&config, &schema);
        got.sort();
        assert_eq!(got, ["hunter22", "tok-123456", "whsec_abcdef"]);
    }

    #[test]
    fn redacts_headers_query_and_bodies() {
        let r = Redactor::new(vec!["tok-123456".into()]);
        assert_eq!(
            r.url("https://a.example/x?api_key=zzz&q=1&t=tok-123456"),
            "https://a.example/x?api_key=%3Credacted%3E&q=1&t=%3Credacted%3E"
        );
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer tok-123456".parse().unwrap());
        h.insert("x-note", "has tok-123456 inside".parse().unwrap());
        h.insert("accept", "application/json".parse().unwrap());
        let got = r.headers(&h);
        assert_eq!(got["authorization"], REDACTED);
        assert_eq!(got["x-note"], "has <redacted> inside");
        assert_eq!(got["accept"], "application/json");
        assert_eq!(
            r.body(b"{\"t\":\"tok-123456\"}"),
            Body::Text("{\"t\":\"<redacted>\"}".into())
        );
    }

    #[test]
    fn a_token_a_response_hands_out_is_redacted_there_and_after() {
        let r = Redactor::new(vec![]);
        let body = r.response_body(
            br#"{"access_token":"ya29.a0AfH6SMC","token_type":"Bearer","expires_in":3599,"refresh_token":"1//0gLqrefresh","scope":"api"}"#,
        );
        assert_eq!(
            body,
            Body::Text(
                r#"{"access_token":"<redacted>","token_type":"Bearer","expires_in":3599,"refresh_token":"<redacted>","scope":"api"}"#
                    .into()
            )
        );
        // Later requests carrying it are redacted too.
        assert_eq!(
            r.url("https://api.example/v1?token=ya29.a0AfH6SMC"),
            "https://api.example/v1?token=%3Credacted%3E"
        );
        assert_eq!(
            r.body(b"access=ya29.a0AfH6SMC"),
            Body::Text("access=<redacted>".into())
        );
        // Form-encoded token responses too.
        let form = r.response_body(b"access_token=gho_16C7e42F292c&scope=repo");
        assert_eq!(
            form,
            Body::Text("access_token=<redacted>&scope=repo".into())
        );
        // A clone (the replayer's, the recorder's) shares what was learned.
        assert_eq!(r.clone().text("gho_16C7e42F292c"), REDACTED);
    }

    #[test]
    fn replay_matches_in_order_and_reports_leftovers() {
        let i = |url: &str| Interaction {
            request: RecordedRequest {
                method: "POST".into(),
                url: url.into(),
                headers: BTreeMap::new(),
                body: Body::Text("{}".into()),
            },
            response: RecordedResponse {
                status: 200,
                headers: BTreeMap::new(),
                body: Body::Text("ok".into()),
            },
        };
        let mut c = Cassette::new(Duration::from_secs(1));
        c.interactions = vec![i("http://a/1"), i("http://a/2")];
        let r = Replayer::new(c, Redactor::default());
        assert!(r
            .next("POST", "http://a/2", &Body::Text("{}".into()))
            .is_err());
        assert_eq!(
            r.next("POST", "http://a/1", &Body::Text("{}".into()))
                .unwrap()
                .status,
            200
        );
        let err = r
            .next("POST", "http://a/2", &Body::Text("{ }".into()))
            .unwrap_err();
        assert!(err.contains("different body"), "{err}");
        assert_eq!(r.take_failures().len(), 2);
        assert!(r.take_failures().is_empty());
        let left = r.unplayed().unwrap();
        assert!(
            left.contains("1 recorded interaction(s) were never requested"),
            "{left}"
        );
    }
}
