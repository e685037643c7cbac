//! HTTP requests the host itself makes for a tenant's project (run
//! notifications; on a server also dbt Cloud's API), held to the network
//! the tenant may reach. A check of the URL's host as written is not
//! enough: a public-looking name can resolve to loopback, the private
//! network or the cloud metadata endpoint. So the client resolves names
//! through [`AddressGuard`], which keeps only the addresses the policy
//! allows, by the sandbox's own rule for plugins
//! ([`NetPolicy::filter_resolved`]: a restricted address only when the
//! policy names it), and follows no redirect (a redirect would reach an
//! address nobody checked).

use sluice_runtime::sandbox::policy::NetPolicy;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Resolves names for a client whose requests go to one port, keeping the
/// addresses `policy` lets it reach.
pub struct AddressGuard {
    policy: Arc<NetPolicy>,
    port: u16,
}

impl reqwest::dns::Resolve for AddressGuard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let port = self.port;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .map(|a| a.ip())
                .collect();
            let kept = policy
                .filter_resolved(&host, port, &found)
                .map_err(|denial| format!("{}: {}", denial.target, denial.reason))?;
            let addrs: reqwest::dns::Addrs =
                Box::new(kept.into_iter().map(move |ip| SocketAddr::new(ip, port)));
            Ok(addrs)
        })
    }
}

/// A client for requests to `url` within `timeout` each, following no
/// redirect; with `reach`, only to addresses it allows (an IP address in
/// the URL is checked here, a name at each connection). The error says
/// why the URL may not be reached.
pub fn client_for(
    url: &str,
    reach: Option<&Arc<NetPolicy>>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    let builder = match reach {
        None => builder,
        Some(policy) => {
            let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
            let port = parsed
                .port_or_known_default()
                .ok_or("the URL has no port and its scheme has no default one")?;
            let ip = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = ip {
                policy
                    .filter_resolved(&ip.to_string(), port, &[ip])
                    .map_err(|denial| format!("{}: {}", denial.target, denial.reason))?;
            }
            // A proxy would resolve the name itself, past the guard.
            builder.no_proxy().dns_resolver(Arc::new(AddressGuard {
                policy: policy.clone(),
                port,
            }))
        }
    };
    builder.build().map_err(|e| format!("no HTTP client: {e}"))
}

/// reqwest's error without the URL (it may hold a secret), with its
/// causes (a refused address says so there).
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> Arc<NetPolicy> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Arc::new(NetPolicy::parse(&patterns).unwrap())
    }

    /// Reads a request's head (these requests have no body) and answers
    /// `HTTP/1.1 {status_and_headers}`.
    async fn answer(socket: &mut tokio::net::TcpStream, status_and_headers: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let response = format!("HTTP/1.1 {status_and_headers}\r\n\r\n");
        let _ = socket.write_all(response.as_bytes()).await;
    }

    /// A receiver on loopback that counts the requests it gets.
    async fn counting_receiver() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer(&mut socket, "200 OK\r\ncontent-length: 0").await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_restricted_address_is_not_reached() {
        let (port, hits) = counting_receiver().await;
        let every_public_host = policy(&["*://*:*"]);
        // `localhost` looks like any name to a check of the URL as written.
        let url = format!("http://localhost:{port}/hook");
        let client = client_for(&url, Some(&every_public_host), Duration::from_secs(5)).unwrap();
        let refused = client.post(&url).send().await.unwrap_err();
        assert!(
            format!("{refused:?}").contains("which no grant names"),
            "{refused:?}"
        );
        // An address in the URL is refused before any client exists.
        let literal = format!("http://127.0.0.1:{port}/hook");
        let err =
            client_for(&literal, Some(&every_public_host), Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);

        // Named by the policy, the same address is reached, by name or not.
        let named = policy(&[&format!("http://127.0.0.1:{port}")]);
        for url in [url, literal] {
            let client = client_for(&url, Some(&named), Duration::from_secs(5)).unwrap();
            assert!(client
                .post(&url)
                .send()
                .await
                .unwrap()
                .status()
                .is_success());
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_redirect_is_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let to = "307 Temporary Redirect\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0";
                answer(&mut socket, to).await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        let client = client_for(&url, None, Duration::from_secs(5)).unwrap();
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 307);
    }
}
