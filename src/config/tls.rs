//! The TLS part of the control file: `[listeners.NAME.tls]` (termination on TCP, HTTP and
//! MySQL listeners). Checks values and resolves certificate paths against the control file's
//! directory; reading and parsing the certificates is `crate::tls`, done on every load so a
//! bad or missing file on reload changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::{invalid, positive_duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The first is the default, for clients that send no SNI or an unknown name.
    pub certificates: Vec<CertFile>,
    /// CA bundle (PEM) that client certificates must chain to (mTLS).
    pub client_ca: Option<String>,
    pub client_auth: Option<ClientAuth>,
    /// TLS sessions remembered for resumption by session ID (process-wide, per listener).
    pub session_cache: Option<u32>,
    pub handshake_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFile {
    /// PEM: the certificate, then its chain.
    pub cert: String,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names this certificate serves: `example.com` or `*.example.com`.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Whether a client certificate is needed when `client_ca` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Required,
    Optional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub certificates: Vec<CertSpec>,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub session_cache: usize,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Lowercase; `*.x` for wildcards.
    pub names: Vec<String>,
}

pub const DEFAULT_SESSION_CACHE: usize = 4096;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn listener(key: &str, f: TlsFile) -> Result<TlsListener, ConfigError> {
    if f.certificates.is_empty() {
        return Err(invalid(
            format!("{key}.certificates"),
            "at least one certificate is needed",
        ));
    }
    let mut certificates = Vec::with_capacity(f.certificates.len());
    for (i, c) in f.certificates.into_iter().enumerate() {
        let k = format!("{key}.certificates[{i}]");
        let mut names = Vec::with_capacity(c.names.len());
        for n in c.names {
            let lower = n.to_ascii_lowercase();
            let body = lower.strip_prefix("*.").unwrap_or(&lower);
            let ok = !body.is_empty()
                && !body.contains('*')
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return Err(invalid(
                    format!("{k}.names"),
                    format!("{n:?} is not a host name or *.domain"),
                ));
            }
            names.push(lower);
        }
        if c.cert.is_empty() || c.key.is_empty() {
            return Err(invalid(k, "`cert` and `key` must be file paths"));
        }
        certificates.push(CertSpec {
            cert: c.cert.into(),
            key: c.key.into(),
            names,
        });
    }
    let session_cache = match f.session_cache {
        None => DEFAULT_SESSION_CACHE,
        Some(n) if n <= 1_000_000 => n as usize,
        Some(n) => {
            return Err(invalid(
                format!("{key}.session_cache"),
                format!("{n} is outside 0..=1000000"),
            ));
        }
    };
    if f.client_auth.is_some() && f.client_ca.is_none() {
        return Err(invalid(
            format!("{key}.client_auth"),
            "needs `client_ca`, the CA client certificates must chain to",
        ));
    }
    Ok(TlsListener {
        certificates,
        client_ca: f.client_ca.map(PathBuf::from),
        client_auth: f.client_auth.unwrap_or_default(),
        session_cache,
        handshake_timeout: match &f.handshake_timeout {
            Some(s) => positive_duration(&format!("{key}.handshake_timeout"), s)?,
            None => DEFAULT_HANDSHAKE_TIMEOUT,
        },
    })
}

impl TlsListener {
    /// Makes relative paths relative to `dir` (the control file's directory).
    pub fn resolve(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for c in &mut self.certificates {
            fix(&mut c.cert);
            fix(&mut c.key);
        }
        if let Some(ca) = &mut self.client_ca {
            fix(ca);
        }
    }
}

/// `[clusters.NAME.tls]`: TLS to the cluster's endpoints (HTTP listeners).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// PEM CA bundle the endpoints' certificates must chain to; default: the system bundle.
    pub ca: Option<String>,
    /// The name sent as SNI and checked in the certificate; default: the endpoint's IP.
    pub server_name: Option<String>,
    /// Check the endpoint's certificate (default true).
    pub verify: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub ca: PathBuf,
    pub server_name: Option<String>,
    pub verify: bool,
}

/// Debian's (and most distributions') CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn upstream(key: &str, f: UpstreamTlsFile) -> Result<UpstreamTls, ConfigError> {
    if let Some(n) = &f.server_name {
        if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
            return Err(invalid(
                format!("{key}.server_name"),
                format!("{n:?} is not a DNS name or IP address"),
            ));
        }
    }
    Ok(UpstreamTls {
        ca: f
            .ca
            .map_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE), PathBuf::from),
        server_name: f.server_name,
        verify: f.verify.unwrap_or(true),
    })
}

impl UpstreamTls {
    /// Makes a relative CA path relative to `dir`.
    pub fn resolve(&mut self, dir: &Path) {
        if self.ca.is_relative() {
            self.ca = dir.join(&self.ca);
        }
    }
}
