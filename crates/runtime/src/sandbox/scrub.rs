//! Keeping secrets out of what is printed and stored. A plugin holds its
//! config's secret values (API keys, passwords) and may echo one into a log
//! line, an error or a row's rejection message; every such text passes a
//! [`Scrubber`] holding the project's secret values before it reaches a
//! terminal, a log or the state store.

use std::borrow::Cow;
use std::sync::Arc;

/// What a scrubbed secret becomes (the cassettes' marker too).
pub const REDACTED: &str = "<redacted>";

/// The secret values to hide. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Scrubber(Arc<[String]>);

/// Values shorter than this are not scrubbed: hiding every `1` or `ab` in
/// every message would make messages unreadable and hide nothing.
const MIN_SECRET_LEN: usize = 4;

impl Scrubber {
    /// A scrubber for `secrets` (longest first, so a secret that contains
    /// another is hidden whole).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber(secrets.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// [`Scrubber::scrub`] in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_whole_and_short_values_left_alone() {
        let s = Scrubber::new([
            "sk_live_123".into(),
            "sk_live_123_extra".into(),
            "ab".into(),
        ]);
        assert_eq!(
            s.scrub("key sk_live_123_extra then sk_live_123, ab"),
            "key <redacted> then <redacted>, ab"
        );
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(Scrubber::default().is_empty());
    }
}
