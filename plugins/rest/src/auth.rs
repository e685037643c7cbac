//! Authentication headers, and OAuth 2.0 client-credentials tokens cached
//! for a writer's life.

use crate::config::{Auth, ClientAuth};
use base64::Engine as _;
use sluice_sdk::http::Request;
use sluice_sdk::prelude::*;
use std::time::{Duration, Instant};

pub struct Authenticator {
    auth: Auth,
    timeout: Duration,
    token: Option<(String, Option<Instant>)>,
}

impl Authenticator {
    pub fn new(auth: Auth, timeout: Duration) -> Self {
        Authenticator {
            auth,
            timeout,
            token: None,
        }
    }

    /// Whether a 401 can be cured by fetching a new token.
    pub fn can_refresh(&self) -> bool {
        matches!(self.auth, Auth::OauthClientCredentials { .. })
    }

    /// Drop the cached token (after a 401).
    pub fn forget_token(&mut self) {
        self.token = None;
    }

    /// The header that authenticates a request, if any.
    pub fn header(&mut self) -> Result<Option<(String, String)>, PluginError> {
        Ok(match &self.auth {
            Auth::None => None,
            Auth::Bearer { token } => Some(("authorization".into(), format!("Bearer {token}"))),
            Auth::Basic { username, password } => Some((
                "authorization".into(),
                format!("Basic {}", basic(username, password)),
            )),
            Auth::ApiKey { header, key } => Some((header.clone(), key.clone())),
            Auth::OauthClientCredentials { .. } => {
                let token = self.oauth_token()?;
                Some(("authorization".into(), format!("Bearer {token}")))
            }
        })
    }

    fn oauth_token(&mut self) -> Result<String, PluginError> {
        if let Some((token, expires)) = &self.token {
            if expires.is_none_or(|at| Instant::now() < at) {
                return Ok(token.clone());
            }
        }
        let Auth::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            client_auth,
        } = &self.auth
        else {
            unreachable!("oauth_token is only called for OAuth")
        };
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if let Some(scope) = scope {
            form.push(("scope", scope.clone()));
        }
        let mut request = Request::post(token_url).timeout(self.timeout);
        match client_auth {
            ClientAuth::Basic => {
                request = request.header(
                    "authorization",
                    &format!(
                        "Basic {}",
                        basic(&form_encode(client_id), &form_encode(client_secret))
                    ),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", client_secret.clone()));
            }
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header("accept", "application/json")
            .body_bytes("application/x-www-form-urlencoded", body.into_bytes())
            .send()
            .map_err(|e| {
                PluginError::Retryable(format!("OAuth token request to {token_url}: {e}"))
            })?;
        if !response.is_success() {
            let message = format!(
                "OAuth token request to {token_url} answered HTTP {}: {}",
                response.status,
                response.text().chars().take(300).collect::<String>()
            );
            return Err(match response.status {
                400 | 401 | 403 => PluginError::Auth(message),
                _ => response.to_error(),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: TokenResponse = response.json().map_err(|e| {
            PluginError::Auth(format!("OAuth token response from {token_url}: {e:?}"))
        })?;
        // Renew a little early so a token does not expire in flight.
        let expires = token
            .expires_in
            .map(|s| Instant::now() + Duration::from_secs(s.saturating_sub(30).max(1)));
        self.token = Some((token.access_token.clone(), expires));
        Ok(token.access_token)
    }
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_credentials_become_headers() {
        let mut a = Authenticator::new(
            Auth::Basic {
                username: "site".into(),
                password: "key".into(),
            },
            Duration::from_secs(1),
        );
        assert_eq!(
            a.header().unwrap(),
            Some(("authorization".into(), "Basic c2l0ZTprZXk=".into()))
        );
        let mut a = Authenticator::new(
            Auth::ApiKey {
                header: "X-Api-Key".into(),
                key: "k".into(),
            },
            Duration::from_secs(1),
        );
        assert_eq!(a.header().unwrap(), Some(("X-Api-Key".into(), "k".into())));
        assert!(!a.can_refresh());
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
