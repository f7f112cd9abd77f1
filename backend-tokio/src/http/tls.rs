//! TLS for the HTTP client (feature `rustls`): tokio-rustls with the `ring`
//! provider, one config per client identity and ALPN offer.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::{ConnectError, ConnectStep, HttpError};
use super::io::SharedTcp;
use super::route::{HttpRoute, Protocol};

/// The crypto provider of the client's TLS: rustls' `ring` (builds with a
/// C compiler alone).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN offers by [`Protocol`]: `Auto`, `Http1`, `Http2`.
const OFFERS: [&[&[u8]]; 3] = [&[b"h2", b"http/1.1"], &[b"http/1.1"], &[b"h2"]];

fn offer_index(p: Protocol) -> usize {
    match p {
        Protocol::Auto => 0,
        Protocol::Http1 => 1,
        Protocol::Http2 => 2,
    }
}

/// What the builder was given, turned into configs at build.
#[derive(Default)]
pub(crate) struct TlsSettings {
    pub(crate) roots: Option<RootCertStore>,
    pub(crate) base: Option<ClientConfig>,
    pub(crate) identities: Vec<(Arc<str>, IdentitySource)>,
}

pub(crate) enum IdentitySource {
    Cert(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    Config(Box<ClientConfig>),
}

/// The configs by client identity (`None`: no client certificate), each
/// with the three ALPN offers.
#[derive(Default)]
pub(crate) struct TlsConfigs {
    by_identity: HashMap<Option<Arc<str>>, [Arc<ClientConfig>; 3]>,
}

fn with_offers(config: ClientConfig) -> [Arc<ClientConfig>; 3] {
    OFFERS.map(|offer| {
        let mut c = config.clone();
        c.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    })
}

fn config_error(what: String, e: impl std::error::Error + Send + Sync + 'static) -> HttpError {
    HttpError::Config {
        what,
        source: Box::new(e),
    }
}

impl TlsSettings {
    pub(crate) fn build(self) -> Result<TlsConfigs, HttpError> {
        let mut out = TlsConfigs::default();
        let roots = self.roots.map(Arc::new);
        let builder = |what: &str| {
            let roots = roots.clone().ok_or_else(|| HttpError::Config {
                what: format!("TLS identity {what}"),
                source: "a client identity given by certificate needs the TLS roots (ClientBuilder::tls_roots)".into(),
            })?;
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots))
                .map_err(|e| config_error(String::from("TLS protocol versions"), e))
        };
        match (self.base, &roots) {
            (Some(c), _) => {
                out.by_identity.insert(None, with_offers(c));
            }
            (None, Some(_)) => {
                let c = builder("-")?.with_no_client_auth();
                out.by_identity.insert(None, with_offers(c));
            }
            (None, None) => {}
        }
        for (name, source) in self.identities {
            let config = match source {
                IdentitySource::Config(c) => *c,
                IdentitySource::Cert(chain, key) => builder(&name)?
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_error(format!("TLS identity {name}"), e))?,
            };
            out.by_identity.insert(Some(name), with_offers(config));
        }
        Ok(out)
    }
}

impl TlsConfigs {
    /// Some config for this identity (`None`: no client certificate).
    pub(crate) fn knows(&self, identity: &Option<Arc<str>>) -> bool {
        self.by_identity.contains_key(identity)
    }

    /// The client identities with a config.
    pub(crate) fn identities(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.by_identity.keys().filter_map(|k| k.clone())
    }

    /// The TLS handshake for `route`, offering its protocols by ALPN.
    pub(crate) async fn handshake(
        &self,
        route: &HttpRoute,
        io: SharedTcp,
    ) -> Result<TlsStream<SharedTcp>, ConnectError> {
        let configs = self.by_identity.get(&route.identity).ok_or_else(|| {
            ConnectError::new(
                ConnectStep::Tls,
                match route.identity {
                    Some(_) => "unknown client identity (ClientBuilder::tls_identity)",
                    None => "no TLS roots or config (ClientBuilder::tls_roots)",
                },
            )
        })?;
        let config = configs[offer_index(route.protocol())].clone();
        let name = ServerName::try_from(route.server_name().to_owned())
            .map_err(|e| ConnectError::new(ConnectStep::Tls, e))?;
        TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| ConnectError::new(ConnectStep::Tls, e))
    }
}
