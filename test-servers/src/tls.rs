//! A throw-away PKI for tests ([`TestPki`]) and the servers' TLS settings ([`ServerTls`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The name the server certificate is issued for (also valid: `127.0.0.1`, `::1`).
pub const SERVER_NAME: &str = "localhost";

/// The crypto provider every config of this crate uses: rustls' `ring` (builds with a C compiler
/// alone; `aws-lc-rs` would need cmake). Use it for your own configs too.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key (a client identity, or the server's leaf).
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The identity's name: the certificate's common name, and what servers record in
    /// [`ConnInfo::identity`](crate::ConnInfo::identity).
    pub name: String,
    /// The certificate chain to present: `[leaf]` (issued directly by the CA).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl ClientIdentity {
    /// The private key as a rustls type.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

struct PkiInner {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    server: ClientIdentity,
    /// Client certificates issued so far (DER → name), read by servers to name identities.
    issued: Mutex<HashMap<Vec<u8>, ClientIdentity>>,
}

/// A test PKI made at run time with rcgen: a CA, a server certificate for `localhost`,
/// `127.0.0.1` and `::1`, and client certificates for any number of identities ("alice" and
/// "bob" are made up front). Cheap to clone (shared).
///
/// ```
/// use wharf_test_servers::{Alpn, ClientAuth, TestPki};
/// let pki = TestPki::new();
/// // a server config that requires a client certificate and offers h2 and http/1.1
/// let tls = pki.server_tls().alpn(Alpn::Both).client_auth(ClientAuth::Required);
/// // a client config presenting alice's certificate and offering h2
/// let client = pki.client_config(&["h2"], Some(&pki.alice()));
/// # let _ = (tls, client);
/// assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// ```
#[derive(Clone)]
pub struct TestPki {
    inner: Arc<PkiInner>,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn issue(
    names: Vec<String>,
    cn: &str,
    eku: ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> ClientIdentity {
    let key = KeyPair::generate().expect("generate key");
    let mut params = CertificateParams::new(names).expect("certificate names");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![eku];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, ca, ca_key)
        .expect("sign certificate");
    ClientIdentity {
        name: cn.to_string(),
        cert_chain: vec![cert.der().clone()],
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

impl TestPki {
    /// Makes a new CA, server certificate and the identities "alice" and "bob".
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "wharf test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let server = issue(
            vec![SERVER_NAME.into(), "127.0.0.1".into(), "::1".into()],
            SERVER_NAME,
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_cert,
            &ca_key,
        );
        let pki = TestPki {
            inner: Arc::new(PkiInner {
                ca_cert,
                ca_key,
                server,
                issued: Mutex::new(HashMap::new()),
            }),
        };
        pki.client("alice");
        pki.client("bob");
        pki
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.inner.ca_cert.der().clone()
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.inner.ca_cert.pem()
    }

    /// A root store holding only this PKI's CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA");
        roots
    }

    /// The server's certificate and key (for `localhost`, `127.0.0.1`, `::1`).
    pub fn server_identity(&self) -> ClientIdentity {
        self.inner.server.clone()
    }

    /// The client identity `name`, issued by the CA on first use (the same certificate after).
    pub fn client(&self, name: &str) -> ClientIdentity {
        let mut issued = self.inner.issued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = issued.values().find(|i| i.name == name) {
            return id.clone();
        }
        let id = issue(
            Vec::new(),
            name,
            ExtendedKeyUsagePurpose::ClientAuth,
            &self.inner.ca_cert,
            &self.inner.ca_key,
        );
        issued.insert(id.cert_chain[0].to_vec(), id.clone());
        id
    }

    /// The identity "alice".
    pub fn alice(&self) -> ClientIdentity {
        self.client("alice")
    }

    /// The identity "bob".
    pub fn bob(&self) -> ClientIdentity {
        self.client("bob")
    }

    /// The identity name of a certificate this PKI issued (`None` for any other).
    pub fn identity_of(&self, cert: &[u8]) -> Option<String> {
        let issued = self.inner.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.get(cert).map(|i| i.name.clone())
    }

    /// The server name to connect to (`localhost`).
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::try_from(SERVER_NAME).expect("server name")
    }

    /// A client config trusting only this CA, offering `alpn` (e.g. `&["h2", "http/1.1"]`;
    /// empty: no ALPN) and presenting `identity` when given.
    pub fn client_config(
        &self,
        alpn: &[&str],
        identity: Option<&ClientIdentity>,
    ) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.root_store());
        let mut cfg = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.cert_chain.clone(), id.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(cfg)
    }

    /// TLS settings for a server, to refine and pass to
    /// [`HttpServerBuilder::tls`](crate::HttpServerBuilder::tls).
    pub fn server_tls(&self) -> ServerTls {
        ServerTls {
            pki: self.clone(),
            alpn: Alpn::Both,
            client_auth: ClientAuth::None,
        }
    }
}

/// ALPN protocols a server offers, in its order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// No ALPN extension: the server speaks its builder's default protocol.
    None,
    /// `h2` only (a client offering only `http/1.1` fails the handshake).
    H2,
    /// `http/1.1` only.
    Http11,
    /// `h2` then `http/1.1`: the server picks `h2` when the client offers it.
    Both,
    /// Any list (e.g. to test a client against an unknown protocol).
    Custom(Vec<Vec<u8>>),
}

impl Alpn {
    fn list(&self) -> Vec<Vec<u8>> {
        match self {
            Alpn::None => vec![],
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::Http11 => vec![b"http/1.1".to_vec()],
            Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Custom(l) => l.clone(),
        }
    }
}

/// Whether a server asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
    /// Asked for; connections without one are accepted (identity `None`).
    Optional,
    /// Required and verified against the PKI's CA: a handshake without one fails.
    Required,
}

/// A server's TLS settings: made by [`TestPki::server_tls`].
#[derive(Clone, Debug)]
pub struct ServerTls {
    pki: TestPki,
    alpn: Alpn,
    client_auth: ClientAuth,
}

impl ServerTls {
    /// The ALPN protocols offered (default [`Alpn::Both`]).
    pub fn alpn(mut self, alpn: Alpn) -> Self {
        self.alpn = alpn;
        self
    }

    /// Client certificates (default [`ClientAuth::None`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// The rustls server config these settings make.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let v = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(self.pki.root_store()),
                    provider(),
                );
                let v = if auth == ClientAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().expect("client verifier"))
            }
        };
        let server = self.pki.server_identity();
        let mut cfg = builder
            .with_single_cert(server.cert_chain.clone(), server.key())
            .expect("server certificate");
        cfg.alpn_protocols = self.alpn.list();
        Arc::new(cfg)
    }

    pub(crate) fn pki(&self) -> &TestPki {
        &self.pki
    }
}
