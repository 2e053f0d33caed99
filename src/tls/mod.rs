//! TLS termination with rustls: builds each TLS listener's `ServerConfig` from the files the
//! control file names, on every load (start and each reload), so new handshakes use the new
//! certificates while open connections keep theirs, and a bad or missing file fails the load
//! (the running table, with its certificates, stays).
//!
//! What a listener gets: TLS 1.3 and 1.2 only (rustls offers nothing older); a certificate
//! chosen by SNI ([`Sni`]: exact names, then `*.domain` wildcards, else the first certificate);
//! ALPN `h2` and `http/1.1` on HTTP listeners; resumption by session ID (an in-memory cache
//! per listener and load) and by tickets (one process-wide ticket key, rotated by rustls, so
//! a ticket works on every worker and across reloads; a listener with `client_ca` has keys of
//! its own per load, since a resumed session keeps the client certificate it was made with);
//! optional client certificates (mTLS) checked against `client_ca`.
//!
//! TLS to upstreams is [`client`].

pub mod client;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::ConfigError;
use crate::config::model::{Config, Protocol};
use crate::config::tls::{ClientAuth, TlsListener};

/// The server configurations of one load of the control file, by listener name.
#[derive(Debug, Default)]
pub struct TlsSet {
    by_listener: HashMap<String, Arc<ServerConfig>>,
    by_cluster: HashMap<String, client::ClusterTls>,
}

impl TlsSet {
    pub fn get(&self, listener: &str) -> Option<Arc<ServerConfig>> {
        self.by_listener.get(listener).cloned()
    }

    pub fn cluster(&self, cluster: &str) -> Option<client::ClusterTls> {
        self.by_cluster.get(cluster).cloned()
    }
}

/// Reads every TLS listener's files and builds its configuration.
pub fn load(config: &Config) -> Result<TlsSet, ConfigError> {
    let mut set = TlsSet::default();
    for l in &config.listeners {
        if let Some(t) = &l.tls {
            let key = format!("listeners.{}.tls", l.name);
            set.by_listener.insert(
                l.name.clone(),
                Arc::new(server_config(&key, t, l.protocol)?),
            );
        }
    }
    for c in &config.clusters {
        if let Some(t) = &c.tls {
            let key = format!("clusters.{}.tls", c.name);
            set.by_cluster
                .insert(c.name.clone(), client::cluster(&key, t, c.http.h2)?);
        }
    }
    Ok(set)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

pub(crate) fn server_config(
    key: &str,
    t: &TlsListener,
    protocol: Protocol,
) -> Result<ServerConfig, ConfigError> {
    let provider = provider();
    let mut sni = Sni::default();
    for (i, c) in t.certificates.iter().enumerate() {
        let k = format!("{key}.certificates[{i}]");
        let ck = Arc::new(certified_key(&k, &c.cert, &c.key, &provider)?);
        for n in &c.names {
            match n.strip_prefix('*') {
                Some(suffix) => sni.wildcard.push((suffix.to_owned(), ck.clone())),
                None => {
                    sni.exact.insert(n.clone(), ck.clone());
                }
            }
        }
        if sni.default.is_none() {
            sni.default = Some(ck);
        }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(key, format!("TLS versions: {e}")))?;
    let builder = match &t.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&format!("{key}.client_ca"), ca)? {
                roots.add(cert).map_err(|e| {
                    invalid(format!("{key}.client_ca"), format!("{}: {e}", ca.display()))
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = match t.client_auth {
                ClientAuth::Required => v,
                ClientAuth::Optional => v.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| invalid(format!("{key}.client_ca"), e.to_string()))?,
            )
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(sni));
    if protocol == Protocol::Http {
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    cfg.session_storage = if t.session_cache > 0 {
        rustls::server::ServerSessionMemoryCache::new(t.session_cache)
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    // A listener that checks client certificates gets ticket keys of its own, made anew on
    // every load: rustls resumes a session with the client certificate it had, so a ticket
    // issued elsewhere (or before `client_ca` changed) must not be accepted here.
    let ticketer = if t.client_ca.is_some() {
        rustls::crypto::ring::Ticketer::new().ok()
    } else {
        ticketer()
    };
    if let Some(ticketer) = ticketer {
        cfg.ticketer = ticketer;
    }
    Ok(cfg)
}

/// The process-wide ticket key (rustls rotates it every few hours).
fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    static T: OnceLock<Option<Arc<dyn rustls::server::ProducesTickets>>> = OnceLock::new();
    T.get_or_init(|| rustls::crypto::ring::Ticketer::new().ok())
        .clone()
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{}: no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn certified_key(
    key: &str,
    cert: &Path,
    private: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let certs = read_certs(&format!("{key}.cert"), cert)?;
    let der = PrivateKeyDer::from_pem_file(private)
        .map_err(|e| invalid(format!("{key}.key"), format!("{}: {e}", private.display())))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| invalid(format!("{key}.key"), format!("{}: {e}", private.display())))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| {
        invalid(
            key,
            format!(
                "{} does not belong to {}: {e}",
                private.display(),
                cert.display()
            ),
        )
    })?;
    Ok(ck)
}

/// Picks a certificate by the name the client asked for (SNI).
#[derive(Debug, Default)]
struct Sni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (`.example.com`, key) for `*.example.com`: one label in front.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl Sni {
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, k)) = self.wildcard.iter().find(|(suffix, _)| {
                name.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            }) {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tls::CertSpec;
    use std::path::PathBuf;
    use std::time::Duration;

    fn certs_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/certs")
    }

    fn listener(certs: &[(&str, &[&str])]) -> TlsListener {
        TlsListener {
            certificates: certs
                .iter()
                .map(|(n, names)| CertSpec {
                    cert: certs_dir().join(format!("{n}.crt")),
                    key: certs_dir().join(format!("{n}.key")),
                    names: names.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            client_ca: None,
            client_auth: ClientAuth::Required,
            session_cache: 16,
            handshake_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let provider = provider();
        let load = |n: &str| {
            Arc::new(
                certified_key(
                    "k",
                    &certs_dir().join(format!("{n}.crt")),
                    &certs_dir().join(format!("{n}.key")),
                    &provider,
                )
                .unwrap(),
            )
        };
        let (local, example) = (load("localhost"), load("example"));
        let sni = Sni {
            exact: [("localhost".to_owned(), local.clone())].into(),
            wildcard: vec![(".example.test".to_owned(), example.clone())],
            default: Some(local.clone()),
        };
        let is = |got: Option<Arc<CertifiedKey>>, want: &Arc<CertifiedKey>| {
            Arc::ptr_eq(&got.unwrap(), want)
        };
        assert!(is(sni.pick(Some("LOCALHOST")), &local));
        assert!(is(sni.pick(Some("a.example.test")), &example));
        assert!(
            is(sni.pick(Some("a.b.example.test")), &local),
            "one label only"
        );
        assert!(is(sni.pick(Some("example.test")), &local), "not the apex");
        assert!(is(sni.pick(None), &local));
    }

    #[test]
    fn bad_files_fail_with_their_key() {
        let mut t = listener(&[("localhost", &["localhost"])]);
        assert!(server_config("l", &t, Protocol::Http).is_ok());
        t.certificates[0].key = certs_dir().join("example.key");
        let e = server_config("l", &t, Protocol::Http).unwrap_err();
        assert_eq!(e.key(), "l.certificates[0]", "{e}");
        t.certificates[0].key = certs_dir().join("missing.key");
        let e = server_config("l", &t, Protocol::Http).unwrap_err();
        assert_eq!(e.key(), "l.certificates[0].key", "{e}");
        t.certificates[0].key = certs_dir().join("localhost.key");
        t.certificates[0].cert = certs_dir().join("localhost.key");
        let e = server_config("l", &t, Protocol::Http).unwrap_err();
        assert_eq!(e.key(), "l.certificates[0].cert", "{e}");
    }
}
