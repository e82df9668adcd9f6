//! TLS for `SSL` and `SASL_SSL` listeners: rustls (ring provider) from Kafka's `ssl.*`
//! settings, PEM only.
//!
//! Owns: reading the keystore (`ssl.keystore.location`: key and chain in one file, or inline
//! `ssl.keystore.certificate.chain` / `ssl.keystore.key`; an encrypted PKCS#8 key with
//! `ssl.key.password`), the truststore (`ssl.truststore.location` or inline
//! `ssl.truststore.certificates`), `ssl.client.auth` (none/requested/required),
//! `ssl.enabled.protocols`, `ssl.cipher.suites` and `ssl.principal.mapping.rules`, all checked
//! at start-up (a bad file or value is one error line and exit 2); and after a handshake, the
//! client's principal (`User:` + its certificate's DN after the rules, else `User:ANONYMOUS`).
//! Must never: put a key, a password or key bytes in an error or log line (errors name the
//! setting and the file, never the content).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::listeners::ListenerConfig;
use super::principal::{self, Rule};
use super::Principal;
use crate::config::ConfigError;

/// The `ssl.*` settings a listener may have (also per listener as `listener.name.<l>.<key>`).
pub const KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm",
];

/// Settings whose values are secrets: never logged, DescribeConfigs shows them as null.
pub fn is_sensitive(key: &str) -> bool {
    [
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.password",
        "ssl.keystore.key",
        "sasl.jaas.config",
    ]
    .iter()
    .any(|s| key == *s || key.ends_with(&format!(".{s}")))
}

/// A TLS listener's server side: the rustls config and the principal mapping.
#[derive(Clone)]
pub struct TlsServer {
    pub config: Arc<ServerConfig>,
    rules: Arc<Vec<Rule>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// `listener.name.<l>.<key>` if set per listener, else `<key>`: the name errors give.
fn key_name(l: &ListenerConfig, key: &str) -> String {
    format!("listener.name.{}.{key}", l.name.to_ascii_lowercase())
}

fn read_file(l: &ListenerConfig, key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(&key_name(l, key), path, format!("cannot read: {e}")))
}

fn check_pem_type(l: &ListenerConfig, key: &str) -> Result<(), ConfigError> {
    let Some(t) = l.get(key) else {
        return Ok(());
    };
    match t.trim().to_ascii_uppercase().as_str() {
        "PEM" => Ok(()),
        "JKS" | "PKCS12" => Err(invalid(
            &key_name(l, key),
            t,
            "only PEM is supported: convert with `keytool -importkeystore -srckeystore store.jks -destkeystore store.p12 -deststoretype PKCS12` (JKS) and `openssl pkcs12 -in store.p12 -out store.pem` (add -nodes for an unencrypted key), then set it to PEM",
        )),
        _ => Err(invalid(&key_name(l, key), t, "only PEM is supported")),
    }
}

/// The private key in `pem` (plain PKCS#8, PKCS#1 or SEC1; or encrypted PKCS#8 with
/// `ssl.key.password`).
fn private_key(
    l: &ListenerConfig,
    key: &str,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let name = key_name(l, key);
    let text = String::from_utf8_lossy(pem);
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    if let Some(start) = text.find(BEGIN) {
        let end = text[start..]
            .find(END)
            .map(|e| start + e + END.len())
            .ok_or_else(|| invalid(&name, "(hidden)", "an unterminated ENCRYPTED PRIVATE KEY"))?;
        let password = l.get("ssl.key.password").ok_or_else(|| {
            invalid(
                &key_name(l, "ssl.key.password"),
                "",
                "the key is encrypted: set ssl.key.password",
            )
        })?;
        let (_, doc) = pkcs8::SecretDocument::from_pem(&text[start..end])
            .map_err(|e| invalid(&name, "(hidden)", format!("not a PKCS#8 key: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes()).map_err(|e| {
            invalid(
                &name,
                "(hidden)",
                format!("not an encrypted PKCS#8 key: {e}"),
            )
        })?;
        let plain = info.decrypt(password).map_err(|_| {
            invalid(
                &key_name(l, "ssl.key.password"),
                "(hidden)",
                "cannot decrypt the key with this password",
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| invalid(&name, "(hidden)", format!("no private key found: {e}")))
}

fn certificates(
    l: &ListenerConfig,
    key: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&key_name(l, key), "", format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(&key_name(l, key), "", "no certificate found"));
    }
    Ok(certs)
}

/// The keystore of `l`: its certificate chain and private key.
type Keystore = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn keystore(l: &ListenerConfig) -> Result<Keystore, ConfigError> {
    Ok(match (
        l.get("ssl.keystore.location"),
        l.get("ssl.keystore.certificate.chain"),
        l.get("ssl.keystore.key"),
    ) {
        (Some(path), None, None) => {
            let pem = read_file(l, "ssl.keystore.location", path)?;
            (
                certificates(l, "ssl.keystore.location", &pem)?,
                private_key(l, "ssl.keystore.location", &pem)?,
            )
        }
        (None, Some(chain), Some(key)) => (
            certificates(l, "ssl.keystore.certificate.chain", chain.as_bytes())?,
            private_key(l, "ssl.keystore.key", key.as_bytes())?,
        ),
        (None, None, None) => {
            return Err(invalid(
                &key_name(l, "ssl.keystore.location"),
                "",
                format!(
                    "listener {} uses {} and needs a keystore (ssl.keystore.location, or ssl.keystore.certificate.chain and ssl.keystore.key)",
                    l.name,
                    l.protocol.name()
                ),
            ))
        }
        _ => {
            return Err(invalid(
                &key_name(l, "ssl.keystore.location"),
                l.get("ssl.keystore.location").unwrap_or(""),
                "give either ssl.keystore.location or both ssl.keystore.certificate.chain and ssl.keystore.key",
            ))
        }
    })
}

/// The CA certificates of `l`'s truststore, if it has one.
fn truststore(l: &ListenerConfig) -> Result<Option<Vec<CertificateDer<'static>>>, ConfigError> {
    Ok(
        match (
            l.get("ssl.truststore.location"),
            l.get("ssl.truststore.certificates"),
        ) {
            (Some(path), None) => Some(certificates(
                l,
                "ssl.truststore.location",
                &read_file(l, "ssl.truststore.location", path)?,
            )?),
            (None, Some(pem)) => Some(certificates(
                l,
                "ssl.truststore.certificates",
                pem.as_bytes(),
            )?),
            (None, None) => None,
            (Some(path), Some(_)) => {
                return Err(invalid(
                    &key_name(l, "ssl.truststore.location"),
                    path,
                    "give either ssl.truststore.location or ssl.truststore.certificates",
                ))
            }
        },
    )
}

fn root_store(
    l: &ListenerConfig,
    trust: Vec<CertificateDer<'static>>,
) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for c in trust {
        roots.add(c).map_err(|e| {
            invalid(
                &key_name(l, "ssl.truststore.location"),
                "",
                format!("bad CA certificate: {e}"),
            )
        })?;
    }
    Ok(roots)
}

/// The client side of `l` for node-to-node connections (the controller listener mapped to
/// SSL): this node's keystore as its client certificate, servers verified against the
/// truststore (which is required), ring as the provider.
pub fn client_config(l: &ListenerConfig) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let (chain, key) = keystore(l)?;
    let Some(trust) = truststore(l)? else {
        return Err(invalid(
            &key_name(l, "ssl.truststore.location"),
            "",
            "nodes verify each other: the controller listener needs a truststore",
        ));
    };
    let roots = root_store(l, trust)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&key_name(l, "ssl.enabled.protocols"), "", e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            invalid(
                &key_name(l, "ssl.keystore.location"),
                l.get("ssl.keystore.location").unwrap_or(""),
                format!("the key does not fit the certificate chain: {e}"),
            )
        })?;
    Ok(Arc::new(config))
}

impl TlsServer {
    /// Builds the TLS side of listener `l` from its settings. Every problem is a
    /// `ConfigError` naming the setting (start-up exits 2).
    pub fn from_listener(l: &ListenerConfig) -> Result<TlsServer, ConfigError> {
        check_pem_type(l, "ssl.keystore.type")?;
        check_pem_type(l, "ssl.truststore.type")?;
        let (chain, key) = keystore(l)?;
        let trust = truststore(l)?;
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = l.get("ssl.cipher.suites").filter(|s| !s.trim().is_empty()) {
            let wanted: Vec<&str> = suites.split(',').map(str::trim).collect();
            let name = |s: &rustls::SupportedCipherSuite| {
                format!("{:?}", s.suite()).replace("TLS13_", "TLS_")
            };
            if let Some(unknown) = wanted
                .iter()
                .find(|w| !provider.cipher_suites.iter().any(|s| name(s) == **w))
            {
                let known: Vec<String> = provider.cipher_suites.iter().map(name).collect();
                return Err(invalid(
                    &key_name(l, "ssl.cipher.suites"),
                    suites,
                    format!("{unknown} is not supported; supported: {}", known.join(",")),
                ));
            }
            provider
                .cipher_suites
                .retain(|s| wanted.contains(&name(s).as_str()));
        }
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        let protocols = l.get("ssl.enabled.protocols").unwrap_or("TLSv1.2,TLSv1.3");
        for p in protocols
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match p {
                "TLSv1.3" => versions.push(&rustls::version::TLS13),
                "TLSv1.2" => versions.push(&rustls::version::TLS12),
                other => {
                    return Err(invalid(
                        &key_name(l, "ssl.enabled.protocols"),
                        protocols,
                        format!("{other} is not supported (TLSv1.2 and TLSv1.3 are)"),
                    ))
                }
            }
        }
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| {
                invalid(
                    &key_name(l, "ssl.cipher.suites"),
                    l.get("ssl.cipher.suites").unwrap_or(""),
                    format!("no cipher suite for the enabled protocols: {e}"),
                )
            })?;
        let auth = l
            .get("ssl.client.auth")
            .unwrap_or("none")
            .trim()
            .to_ascii_lowercase();
        let builder = match (auth.as_str(), trust) {
            ("none", _) => builder.with_no_client_auth(),
            ("requested" | "required", Some(trust)) => {
                let roots = root_store(l, trust)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == "requested" {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| {
                    invalid(&key_name(l, "ssl.truststore.location"), "", e.to_string())
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            ("requested" | "required", None) => {
                return Err(invalid(
                    &key_name(l, "ssl.client.auth"),
                    &auth,
                    "client authentication needs a truststore (ssl.truststore.location or ssl.truststore.certificates)",
                ))
            }
            _ => {
                return Err(invalid(
                    &key_name(l, "ssl.client.auth"),
                    &auth,
                    "one of none, requested, required",
                ))
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            invalid(
                &key_name(l, "ssl.keystore.location"),
                l.get("ssl.keystore.location").unwrap_or(""),
                format!("the key does not fit the certificate chain: {e}"),
            )
        })?;
        let rules = principal::parse_rules(l.get("ssl.principal.mapping.rules").unwrap_or(""))
            .map_err(|e| {
                invalid(
                    &key_name(l, "ssl.principal.mapping.rules"),
                    l.get("ssl.principal.mapping.rules").unwrap_or(""),
                    e,
                )
            })?;
        Ok(TlsServer {
            config: Arc::new(config),
            rules: Arc::new(rules),
        })
    }

    /// The principal of a connection whose handshake is done: `User:<DN after the rules>`
    /// for a verified client certificate, `User:ANONYMOUS` without one; None when no mapping
    /// rule applies (the connection is then closed, as Kafka fails it).
    pub fn principal(&self, peer_certificates: Option<&[CertificateDer<'_>]>) -> Option<Principal> {
        let Some(cert) = peer_certificates.and_then(|c| c.first()) else {
            return Some(Principal::anonymous());
        };
        let dn = principal::subject_dn(cert)?;
        principal::map(&self.rules, &dn).map(Principal::user)
    }
}
