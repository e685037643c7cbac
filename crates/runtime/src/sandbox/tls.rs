//! TLS for plugins (`wasi:tls`): **where a plugin's server certificate is
//! verified**. The handshake runs in the host over streams of a
//! `wasi:sockets` connection the plugin opened, so the network grant was
//! already checked on that TCP connection (`sockets.rs`); this module only
//! decides what the certificate must prove.
//!
//! A plugin chooses, through `sluice:tls/policy.set` (`wit/tls/policy.wit`),
//! one of three verifications, and optionally a CA bundle file to use
//! instead of the public roots. **Where a CA file is allowed**:
//! [`ca_file_host_path`] maps the plugin's path to the host through a
//! directory the operator granted this plugin (its guest path, as the
//! plugin sees files), and refuses any other path; the resolved path (`..`
//! and links resolved) must still lie inside that grant's directory, so a
//! link planted in a writable grant cannot point the host elsewhere.
//!
//! | verification | chain to a root | host name | libpq / MySQL |
//! |---|---|---|---|
//! | `full` (default) | yes | yes | `verify-full` / `VERIFY_IDENTITY` |
//! | `chain` | yes | no | `verify-ca` / `VERIFY_CA` |
//! | `none` | no | no | `require` / `REQUIRED` |
//!
//! `none` is **unsafe against an active attacker**, who can present any
//! certificate; it keeps only passive listeners out (as libpq documents for
//! `require`). The handshake's signatures are still checked, so the peer
//! holds the key of the certificate it sent.
//!
//! Pure code over rustls (no wasmtime): `crates/runtime/src/tls.rs` links
//! it to `wasi:tls` and `sluice:tls/policy`.

use super::policy::DirGrant;
use super::protected;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest CA bundle a plugin may pass (a full public bundle is about
/// 220 KiB).
pub const MAX_CA_PEM_BYTES: usize = 1024 * 1024;

/// What a handshake checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Chain to a trusted root and the host name.
    #[default]
    Full,
    /// Chain to a trusted root, any host name.
    Chain,
    /// Nothing but the handshake signatures (unsafe; see the module doc).
    None,
}

/// An instance's TLS policy: how to verify, and the roots to verify with.
#[derive(Debug, Clone, Default)]
pub struct TlsPolicy {
    pub verification: Verification,
    /// `None`: the public roots (webpki-roots).
    pub custom_roots: Option<Vec<CertificateDer<'static>>>,
}

impl TlsPolicy {
    /// The policy for `verification` with the certificates of `ca_pem`
    /// (PEM text) as the only roots, or the public roots without it.
    pub fn new(verification: Verification, ca_pem: Option<&str>) -> Result<TlsPolicy, String> {
        let custom_roots = ca_pem.map(parse_ca_pem).transpose()?;
        Ok(TlsPolicy {
            verification,
            custom_roots,
        })
    }

    /// The rustls client configuration this policy stands for.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification {
            Verification::None => Arc::new(NoVerification(provider)),
            Verification::Full => self.webpki_verifier(provider)?,
            Verification::Chain => Arc::new(ChainOnly(self.webpki_verifier(provider)?)),
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    fn webpki_verifier(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, String> {
        let mut roots = RootCertStore::empty();
        match &self.custom_roots {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(certs) => {
                for (i, cert) in certs.iter().enumerate() {
                    roots.add(cert.clone()).map_err(|e| {
                        format!(
                            "certificate {} of the CA bundle is not a usable root: {e}",
                            i + 1
                        )
                    })?;
                }
            }
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))
    }
}

/// The host path of the CA file a plugin names (`guest_path`, absolute, as
/// the plugin sees files), if a directory the operator granted it contains
/// it: the grant whose guest path is the longest prefix, its host directory
/// joined with the rest, and the result (links resolved) still inside it.
pub fn ca_file_host_path(guest_path: &str, dirs: &[DirGrant]) -> Result<PathBuf, String> {
    let path = Path::new(guest_path);
    if !path.is_absolute() {
        return Err(format!(
            "the CA file `{guest_path}` must be an absolute path"
        ));
    }
    let not_granted = || {
        format!(
            "the CA file `{guest_path}` is not inside a directory granted to this plugin \
             (grant its folder, e.g. `dir:/etc/ssl/db:ro`)"
        )
    };
    let (grant, rest) = dirs
        .iter()
        .filter_map(|d| {
            path.strip_prefix(&d.guest)
                .ok()
                .map(|rest| (d, rest.to_path_buf()))
        })
        .max_by_key(|(d, _)| d.guest.len())
        .ok_or_else(not_granted)?;
    let granted = protected::resolve(&grant.host);
    let host = protected::resolve(&grant.host.join(rest));
    if host.starts_with(&granted) {
        Ok(host)
    } else {
        Err(not_granted())
    }
}

/// Read a CA file found by [`ca_file_host_path`], at most
/// [`MAX_CA_PEM_BYTES`].
pub fn read_ca_file(guest_path: &str, host_path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(host_path)
        .map_err(|e| format!("cannot open the CA file `{guest_path}`: {e}"))?;
    let mut text = String::new();
    file.take(MAX_CA_PEM_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the CA file `{guest_path}` as text: {e}"))?;
    Ok(text)
}

/// The certificates of a PEM bundle; an error names what was wrong.
fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(format!(
            "the CA bundle is {} bytes; at most {MAX_CA_PEM_BYTES} are accepted",
            pem.len()
        ));
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .enumerate()
        .map(|(i, cert)| {
            cert.map_err(|e| format!("PEM block {} of the CA bundle is malformed: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err("the CA bundle holds no `BEGIN CERTIFICATE` block".into());
    }
    Ok(certs)
}

/// `verify-ca`: the full web PKI check, except that a certificate valid for
/// another name passes. rustls checks the chain before the name, so a name
/// error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: any certificate; only the handshake signatures are checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bundles_without_certificates_or_malformed() {
        let err = TlsPolicy::new(Verification::Full, Some("hello")).unwrap_err();
        assert!(err.contains("no `BEGIN CERTIFICATE`"), "{err}");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let err = TlsPolicy::new(Verification::Full, Some(broken)).unwrap_err();
        assert!(err.contains("PEM block 1"), "{err}");
        let huge = "x".repeat(MAX_CA_PEM_BYTES + 1);
        let err = TlsPolicy::new(Verification::Chain, Some(&huge)).unwrap_err();
        assert!(err.contains("at most"), "{err}");
    }

    #[test]
    fn default_is_full_verification_with_public_roots() {
        let policy = TlsPolicy::default();
        assert_eq!(policy.verification, Verification::Full);
        assert!(policy.custom_roots.is_none());
        policy.client_config().unwrap();
    }
    fn grant(host: &Path, guest: &str) -> DirGrant {
        DirGrant {
            host: host.to_path_buf(),
            guest: guest.into(),
            writable: false,
        }
    }

    #[test]
    fn ca_files_are_read_only_inside_granted_directories() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("ca.pem"), "pem").unwrap();
        let grants = [grant(&certs, "/ssl")];
        let host = ca_file_host_path("/ssl/ca.pem", &grants).unwrap();
        assert_eq!(host, protected::resolve(&certs.join("ca.pem")));
        assert_eq!(read_ca_file("/ssl/ca.pem", &host).unwrap(), "pem");
        for outside in ["/etc/passwd", "/ssl/../etc/passwd", "/sslx/ca.pem"] {
            let err = ca_file_host_path(outside, &grants).unwrap_err();
            assert!(
                err.contains("not inside a directory granted"),
                "{outside}: {err}"
            );
        }
        let err = ca_file_host_path("ssl/ca.pem", &grants).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/passwd", certs.join("link.pem")).unwrap();
            let err = ca_file_host_path("/ssl/link.pem", &grants).unwrap_err();
            assert!(err.contains("not inside a directory granted"), "{err}");
        }
        let err = read_ca_file("/ssl/none.pem", &certs.join("none.pem")).unwrap_err();
        assert!(
            err.contains("cannot open the CA file `/ssl/none.pem`"),
            "{err}"
        );
    }

    /// A private CA and a server certificate it issued for `localhost`.
    struct Pki {
        ca_pem: String,
        server: rustls::ServerConfig,
    }

    fn pki() -> Pki {
        pki_named("sluice test CA")
    }

    fn pki_named(ca_name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der.into())
        .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server,
        }
    }

    /// A whole handshake in memory; the client's error if it fails.
    fn handshake(policy: &TlsPolicy, pki: &Pki, name: &str) -> Result<(), Error> {
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let client =
            rustls::ClientConnection::new(Arc::new(policy.client_config().unwrap()), server_name)?;
        let mut client = rustls::Connection::Client(client);
        let server = rustls::ServerConnection::new(Arc::new(pki.server.clone()))?;
        let mut server = rustls::Connection::Server(server);
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            transfer(&mut client, &mut server);
            let _ = server.process_new_packets();
            transfer(&mut server, &mut client);
            client.process_new_packets()?;
        }
        panic!("the handshake did not finish in 10 round trips");
    }

    fn transfer(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
        }
    }

    fn policy(verification: Verification, ca_pem: Option<&str>) -> TlsPolicy {
        TlsPolicy::new(verification, ca_pem).unwrap()
    }

    #[test]
    fn full_verification_checks_chain_and_name() {
        let pki = pki();
        let trusted = policy(Verification::Full, Some(&pki.ca_pem));
        handshake(&trusted, &pki, "localhost").unwrap();
        let err = handshake(&trusted, &pki, "127.0.0.1").unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })
            ),
            "{err:?}"
        );
        let public = policy(Verification::Full, None);
        let err = handshake(&public, &pki, "localhost").unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn chain_verification_ignores_only_the_name() {
        let pki = pki();
        let trusted = policy(Verification::Chain, Some(&pki.ca_pem));
        handshake(&trusted, &pki, "127.0.0.1").unwrap();
        handshake(&trusted, &pki, "localhost").unwrap();
        let other_ca = pki_other_ca();
        let untrusted = policy(Verification::Chain, Some(&other_ca));
        let err = handshake(&untrusted, &pki, "localhost").unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn no_verification_accepts_an_untrusted_certificate() {
        let pki = pki();
        let none = policy(Verification::None, None);
        handshake(&none, &pki, "127.0.0.1").unwrap();
        handshake(&none, &pki, "some.other.name").unwrap();
    }

    /// The PEM of a CA that issued nothing the server holds.
    fn pki_other_ca() -> String {
        pki_named("another CA").ca_pem
    }
}
