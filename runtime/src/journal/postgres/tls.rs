//! TLS to PostgreSQL, set in the journal URL the way libpq reads it:
//! `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`;
//! `prefer` when absent) and `sslrootcert` (a PEM file of the CAs to trust,
//! or `system` for the machine's roots). Through rustls with the ring
//! provider ([`tokio_postgres_rustls`]).
//!
//! Invariants:
//! - `prefer` and `require` encrypt without checking who answers (as in
//!   libpq), except that `require` with a CA file checks the chain as
//!   `verify-ca` does; `verify-ca` checks the certificate chains to a given
//!   CA; `verify-full` also checks that it names the host connected to.
//! - `verify-ca` and `verify-full` never fall back to plain TCP: tokio-postgres
//!   sees them as `require`, which refuses a server without TLS.
//! - Nothing here prints the URL: an error names the parameter at fault,
//!   never the password.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::journal::JournalError;

/// How a connection uses TLS: libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise; the server's
    /// certificate is not checked. libpq's default, and ours.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a CA file
    /// is given: then as `VerifyCa`).
    Require,
    /// TLS, with a certificate that chains to a CA of `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, JournalError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` (plain first, TLS if refused) is not offered.
            other => {
                return Err(JournalError::BadUrl(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    /// The name in the URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: it knows the first three, and the checks
    /// of the last two are the verifier's.
    fn wire(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Where the CAs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    /// `sslrootcert=PATH`, or libpq's default `~/.postgresql/root.crt`.
    File(PathBuf),
    /// `sslrootcert=system`: the machine's roots.
    System,
}

/// A journal URL read: the settings tokio-postgres takes, and the TLS connector.
#[derive(Clone)]
pub(crate) struct Target {
    /// The connection settings, with `sslmode` as tokio-postgres knows it.
    pub(crate) pg: tokio_postgres::Config,
    /// The connector every connection of the journal uses.
    pub(crate) tls: MakeRustlsConnect,
    /// The `sslmode` asked for.
    pub(crate) mode: SslMode,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres's own Debug of the config redacts the password.
        f.debug_struct("Target")
            .field("pg", &self.pg)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Reads a journal URL (`postgres://user:password@host:port/db?sslmode=…`).
pub(crate) fn target(url: &str) -> Result<Target, JournalError> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, ""), |(base, query)| (base, query));
    let mut mode = None;
    let mut rootcert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(SslMode::parse(&percent_decode(key, value)?)?),
            "sslrootcert" => rootcert = Some(percent_decode(key, value)?),
            _ => kept.push(pair),
        }
    }
    let mode = mode.unwrap_or(SslMode::Prefer);
    let roots = match rootcert.as_deref() {
        Some("system") => Some(Roots::System),
        Some("") => None,
        Some(path) => Some(Roots::File(PathBuf::from(path))),
        None => default_root_file().map(Roots::File),
    };
    kept.push(match mode.wire() {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let pg: tokio_postgres::Config = format!("{base}?{}", kept.join("&")).parse()?;
    let config = client_config(mode, roots.as_ref(), rootcert.is_some())?;
    Ok(Target {
        pg,
        tls: MakeRustlsConnect::new(config),
        mode,
    })
}

/// libpq's default CA file, where it exists.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let file = Path::new(&home).join(".postgresql/root.crt");
    file.is_file().then_some(file)
}

/// The rustls settings for `mode`. `explicit`: the CAs were named in the
/// URL (a missing default file is not an error; a missing named one is).
fn client_config(
    mode: SslMode,
    roots: Option<&Roots>,
    explicit: bool,
) -> Result<ClientConfig, JournalError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| JournalError::Tls(format!("the TLS settings: {e}")))?;
    let roots = match (mode, roots) {
        (SslMode::Disable | SslMode::Prefer, _) if !explicit => None,
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => None,
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(JournalError::BadUrl(format!(
                "sslmode={} needs the CA to check the server's certificate against: \
                 sslrootcert=PATH (a PEM file), sslrootcert=system, or ~/.postgresql/root.crt",
                mode.as_str()
            )));
        }
        (_, Some(roots)) => Some(Arc::new(load_roots(roots)?)),
    };
    let config = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => {
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // `require` with CAs is `verify-ca`, as in libpq; `prefer` never checks.
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NamesUnchecked {
                roots: Some(roots),
                provider,
            }))
            .with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NamesUnchecked {
                roots: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, JournalError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| JournalError::BadUrl(format!("sslrootcert={shown}: {e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JournalError::BadUrl(format!("sslrootcert={shown}: {e}")))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(JournalError::BadUrl(format!(
                    "sslrootcert={shown} holds no certificate"
                )));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(JournalError::BadUrl(format!(
                    "sslrootcert=system: no CA certificates found on this machine ({} errors)",
                    found.errors.len()
                )));
            }
        }
    }
    Ok(store)
}

/// `%XX` escapes of a query value decoded (`sslrootcert` may hold any path).
fn percent_decode(key: &str, value: &str) -> Result<String, JournalError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    JournalError::BadUrl(format!("{key}: a bad %-escape in {value:?}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| JournalError::BadUrl(format!("{key}: {value:?} is not UTF-8 once decoded")))
}

/// The checks of the handshake's signatures, which every verifier keeps: they
/// prove the server holds the key of the certificate it sent.
fn signatures(provider: &CryptoProvider) -> &rustls::crypto::WebPkiSupportedAlgorithms {
    &provider.signature_verification_algorithms
}

/// A verifier that never checks the certificate's names: with no `roots`
/// (`prefer`, and `require` without CAs) it takes any certificate (the
/// session is encrypted, but not against a man in the middle, as in libpq);
/// with `roots` (`verify-ca`) the certificate must chain to one of them.
#[derive(Debug)]
struct NamesUnchecked {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NamesUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                signatures(&self.provider).all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, signatures(&self.provider))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, signatures(&self.provider))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signatures(&self.provider).supported_schemes()
    }
}

/// A connect error that a TLS check caused, said plainly; `None` for others.
pub(crate) fn failure(e: &tokio_postgres::Error, mode: SslMode) -> Option<JournalError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            let hint = match tls {
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                    ": the server's certificate is not signed by a CA of sslrootcert"
                }
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                ) => {
                    ": the server's certificate does not name the host in the URL \
                     (verify-full checks it; verify-ca does not)"
                }
                _ => "",
            };
            return Some(JournalError::Tls(format!(
                "sslmode={}: {tls}{hint}",
                mode.as_str()
            )));
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_the_url_tokio_postgres_gets() {
        let t = target("postgres://u:secret@h:5/db?sslmode=verify-full&sslrootcert=system")
            .expect("system roots");
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(
            t.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(t.pg.get_dbname(), Some("db"));
        let t = target("postgres://u:secret@h/db?application_name=x").expect("default");
        assert_eq!(t.mode, SslMode::Prefer);
        assert_eq!(t.pg.get_application_name(), Some("x"));
        let t = target("postgres://u@h/db?sslmode=disable").expect("disable");
        assert_eq!(
            t.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn refusals_name_the_parameter_not_the_password() {
        for url in [
            "postgres://u:secret@h/db?sslmode=allow",
            "postgres://u:secret@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            "postgres://u:secret@h/db?sslmode=require&sslrootcert=%zz",
        ] {
            let e = target(url).expect_err(url).to_string();
            assert!(e.contains("ssl"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(
            percent_decode("sslrootcert", "/a%20b/c.pem").expect("decodes"),
            "/a b/c.pem"
        );
    }
}
