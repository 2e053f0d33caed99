//! TLS to upstreams: one rustls `ClientConfig` per cluster with `[clusters.NAME.tls]`, built on
//! every load like the listeners' server configurations. The endpoint's certificate is checked
//! against `ca` (the system bundle by default) for `server_name` (the endpoint's IP by
//! default); `verify = false` turns the check off, for test setups only.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{invalid, provider, read_certs};
use crate::config::ConfigError;
use crate::config::tls::UpstreamTls;

/// What connecting to a TLS cluster's endpoints needs.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub config: Arc<ClientConfig>,
    /// `None`: the endpoint's IP address.
    pub server_name: Option<ServerName<'static>>,
}

pub fn cluster(key: &str, t: &UpstreamTls, h2: bool) -> Result<ClusterTls, ConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(key, format!("TLS versions: {e}")))?;
    let mut config = if t.verify {
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(read_certs(&format!("{key}.ca"), &t.ca)?);
        if added == 0 {
            return Err(invalid(
                format!("{key}.ca"),
                format!("{}: no usable CA certificate", t.ca.display()),
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let server_name = match &t.server_name {
        None => None,
        Some(n) => Some(
            ServerName::try_from(n.clone())
                .map_err(|e| invalid(format!("{key}.server_name"), e.to_string()))?,
        ),
    };
    Ok(ClusterTls {
        config: Arc::new(config),
        server_name,
    })
}

/// Accepts any certificate (`verify = false`), still checking handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
