//! Named listeners: `listeners`, `advertised.listeners`, `listener.security.protocol.map`,
//! `inter.broker.listener.name` and the per-listener `listener.name.<name>.<key>` settings,
//! parsed into a [`SecurityConfig`] before any port is bound.
//!
//! Owns: Kafka's syntax and checks for those settings (`NAME://host:port`, names unique and
//! upper-cased, ports distinct, every name mapped to a security protocol, the inter-broker
//! listener advertised), and the `--listen`/`--advertise` shorthand for one PLAINTEXT
//! listener (given together with `listeners` it is an error). Every error names the setting
//! and the value, so `josefine` exits 2 with one clear line.
//! Must never: accept a listener spec it would have to guess at (an unmapped name, a repeated
//! port), or bind anything (the server binds what this returns).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::connections::PerIpLimits;
use super::sasl::SaslServer;
use super::tls::TlsServer;
use super::SecurityProtocol;
use crate::config::ConfigError;

/// Kafka-named settings read here rather than by `BrokerSettings` (see [`is_security_key`]).
pub const KEYS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "controller.listener.names",
];

/// Whether `key` may also be given per listener as `listener.name.<name>.<key>`.
pub fn is_listener_key(key: &str) -> bool {
    super::tls::KEYS.contains(&key) || super::sasl::KEYS.contains(&key)
}

/// Whether `key` is read by [`SecurityConfig::resolve`].
pub fn is_security_key(key: &str) -> bool {
    KEYS.contains(&key) || is_listener_key(key) || key.starts_with("listener.name.")
}

/// One listener: where it binds, what it advertises, its protocol and its own settings.
#[derive(Clone)]
pub struct ListenerConfig {
    /// Upper case, as Kafka normalises listener names.
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// What it registers (None: not in `advertised.listeners`, so not registered).
    pub advertised: Option<(String, i32)>,
    /// `listener.name.<name>.<key>` values by `<key>`, and the global `<key>` for keys not
    /// given per listener (only keys of [`is_listener_key`]). Secrets among them are never
    /// logged (this type's `Debug` leaves the values out).
    pub settings: BTreeMap<String, String>,
    /// The TLS side of an `SSL` or `SASL_SSL` listener, built (and checked) at start-up.
    pub tls: Option<TlsServer>,
    /// The SASL side of a `SASL_PLAINTEXT` or `SASL_SSL` listener.
    pub sasl: Option<SaslServer>,
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("bind", &self.bind)
            .field("advertised", &self.advertised)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ListenerConfig {
    /// The effective value of a per-listener setting (an empty value counts as unset).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The security configuration: listeners and connection-level settings.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// In the order given.
    pub listeners: Vec<ListenerConfig>,
    /// `inter.broker.listener.name`: what replicas and the controller's peers dial.
    pub inter_broker_listener: String,
    /// `max.connections.per.ip` and its overrides.
    pub per_ip: PerIpLimits,
    /// Mutual TLS on the raft address: the listener `controller.listener.names` names is
    /// mapped to SSL (None: plain TCP, unprotected).
    pub raft_tls: Option<crate::raft::transport::RaftTls>,
}

/// The protocol `listener.security.protocol.map` gives listener `name`.
fn protocol_of(
    values: &BTreeMap<String, String>,
    protocols: &BTreeMap<String, SecurityProtocol>,
    name: &str,
) -> Result<SecurityProtocol, ConfigError> {
    protocols.get(name).copied().ok_or_else(|| {
        invalid(
            "listener.security.protocol.map",
            values
                .get("listener.security.protocol.map")
                .map(String::as_str)
                .unwrap_or(""),
            format!("maps no security protocol to listener {name}"),
        )
    })
}

/// The listener `controller.listener.names` names (its first name, as Kafka's brokers use it):
/// the raft address (`--raft-listen`) speaks its protocol with its settings. PLAINTEXT or SSL;
/// SSL means mutual TLS, so its `ssl.client.auth` is `required` (the default here).
fn controller_listener(
    values: &BTreeMap<String, String>,
    protocols: &BTreeMap<String, SecurityProtocol>,
    listeners: &[ListenerConfig],
) -> Result<Option<ListenerConfig>, ConfigError> {
    const KEY: &str = "controller.listener.names";
    let Some(v) = values.get(KEY) else {
        return Ok(None);
    };
    let name = v
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    if name.is_empty() {
        return Err(invalid(KEY, v, "name the controller listener"));
    }
    if listeners.iter().any(|l| l.name == name) {
        return Err(invalid(
            KEY,
            v,
            "the controller listener is the raft address (--raft-listen): leave it out of `listeners`",
        ));
    }
    let protocol = protocol_of(values, protocols, &name)?;
    if !matches!(
        protocol,
        SecurityProtocol::Plaintext | SecurityProtocol::Ssl
    ) {
        return Err(invalid(
            KEY,
            v,
            format!(
                "the controller listener speaks PLAINTEXT or SSL, not {}",
                protocol.name()
            ),
        ));
    }
    let auth_key = format!(
        "listener.name.{}.ssl.client.auth",
        name.to_ascii_lowercase()
    );
    let auth = values.get(&auth_key).or(values.get("ssl.client.auth"));
    if protocol == SecurityProtocol::Ssl && auth.is_some_and(|a| a.trim() != "required") {
        return Err(invalid(
            &auth_key,
            auth.map(String::as_str).unwrap_or(""),
            "nodes authenticate each other: the controller listener needs ssl.client.auth=required",
        ));
    }
    let mut settings = BTreeMap::new();
    settings.insert("ssl.client.auth".to_string(), "required".to_string());
    Ok(Some(ListenerConfig {
        name,
        protocol,
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        advertised: None,
        settings,
        tls: None,
        sasl: None,
    }))
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// One `NAME://host:port` entry: (name upper-cased, host as given, port).
fn parse_entry(key: &str, entry: &str) -> Result<(String, String, u16), ConfigError> {
    let (name, rest) = entry
        .split_once("://")
        .ok_or_else(|| invalid(key, entry, "expected NAME://HOST:PORT"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            key,
            entry,
            "a listener name is letters, digits, `_` and `-`",
        ));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, entry, "expected NAME://HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, entry, "the port must be 0 to 65535"))?;
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

fn parse_list(key: &str, value: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = parse_entry(key, entry)?;
        if out.iter().any(|(n, _, _)| *n == parsed.0) {
            return Err(invalid(
                key,
                value,
                format!("listener name {} appears twice", parsed.0),
            ));
        }
        out.push(parsed);
    }
    if out.is_empty() {
        return Err(invalid(key, value, "no listener given"));
    }
    Ok(out)
}

fn parse_protocol_map(value: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(key, entry, "expected NAME:PROTOCOL"))?;
        let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
            invalid(
                key,
                entry,
                "the protocol is one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
            )
        })?;
        if map
            .insert(name.trim().to_ascii_uppercase(), protocol)
            .is_some()
        {
            return Err(invalid(key, value, format!("{name} is mapped twice")));
        }
    }
    Ok(map)
}

/// Kafka's default map: each protocol name to itself.
fn default_protocol_map() -> BTreeMap<String, SecurityProtocol> {
    [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.name().to_string(), p))
    .collect()
}

fn resolve_bind(key: &str, entry: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, entry, format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, entry, format!("{host} resolves to no address")))
}

/// The host a listener bound to every interface advertises when `advertised.listeners` does
/// not say: this machine's host name, as Kafka (which uses the canonical host name).
fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl SecurityConfig {
    /// Resolves the security settings from the Kafka-named `values` (only keys for which
    /// [`is_security_key`] holds) and the `--listen`/`--advertise` flags (`None` when not
    /// given). `voters` is the chain's size: TLS or SASL between brokers is refused on a
    /// multi-node chain until the broker's own clients speak it.
    pub fn resolve(
        values: &BTreeMap<String, String>,
        listen: Option<&str>,
        advertise: Option<&str>,
        voters: usize,
    ) -> Result<SecurityConfig, ConfigError> {
        let protocols = match values.get("listener.security.protocol.map") {
            Some(v) => parse_protocol_map(v)?,
            None => default_protocol_map(),
        };
        let given = values.get("listeners");
        if given.is_some() && (listen.is_some() || advertise.is_some()) {
            return Err(invalid(
                "listeners",
                given.map(String::as_str).unwrap_or_default(),
                "--listen/--advertise are the shorthand for one PLAINTEXT listener: give either them or `listeners`",
            ));
        }
        let advertised_given = values.get("advertised.listeners");
        if advertised_given.is_some() && advertise.is_some() {
            return Err(invalid(
                "advertised.listeners",
                advertised_given.map(String::as_str).unwrap_or_default(),
                "give either --advertise or `advertised.listeners`",
            ));
        }
        // (name, bind host, port) and the entry text, for errors.
        let binds: Vec<(String, String, u16, String)> = match given {
            Some(v) => parse_list("listeners", v)?
                .into_iter()
                .map(|(n, h, p)| {
                    let text = format!("{n}://{h}:{p}");
                    (n, h, p, text)
                })
                .collect(),
            None => {
                let listen = listen.unwrap_or("127.0.0.1:9092");
                let (host, port) = crate::config::split_host_port("listen", listen)?;
                let port = u16::try_from(port)
                    .map_err(|_| invalid("listen", listen, "the port must be 0 to 65535"))?;
                vec![("PLAINTEXT".into(), host, port, listen.to_string())]
            }
        };
        let advertised: Option<Vec<(String, String, u16)>> = match (advertised_given, advertise) {
            (Some(v), _) => Some(parse_list("advertised.listeners", v)?),
            (None, Some(a)) => {
                let (host, port) = crate::config::split_host_port("advertise", a)?;
                let port = u16::try_from(port)
                    .map_err(|_| invalid("advertise", a, "the port must be 0 to 65535"))?;
                Some(vec![("PLAINTEXT".into(), host, port)])
            }
            (None, None) => None,
        };
        let mut listeners = Vec::with_capacity(binds.len());
        for (name, host, port, text) in &binds {
            let key = if given.is_some() {
                "listeners"
            } else {
                "listen"
            };
            let protocol = protocol_of(values, &protocols, name)?;
            if *port != 0 {
                if let Some(other) = listeners
                    .iter()
                    .find(|l: &&ListenerConfig| l.bind.port() == *port)
                {
                    return Err(invalid(
                        key,
                        given.map(String::as_str).unwrap_or(text),
                        format!(
                            "listeners {} and {name} use the same port {port}",
                            other.name
                        ),
                    ));
                }
            }
            let bind = resolve_bind(key, text, host, *port)?;
            let advertised = match &advertised {
                Some(list) => list
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, h, p)| (h.clone(), i32::from(*p))),
                None => Some((host.clone(), i32::from(*port))),
            }
            .map(|(h, p)| {
                let h = if h.is_empty() || h == "0.0.0.0" || h == "::" {
                    local_host_name()
                } else {
                    h
                };
                (h, p)
            });
            listeners.push(ListenerConfig {
                name: name.clone(),
                protocol,
                bind,
                advertised,
                settings: BTreeMap::new(),
                tls: None,
                sasl: None,
            });
        }
        if let Some(list) = &advertised {
            if let Some((n, _, _)) = list
                .iter()
                .find(|(n, _, _)| !listeners.iter().any(|l| l.name == *n))
            {
                return Err(invalid(
                    "advertised.listeners",
                    advertised_given.map(String::as_str).unwrap_or_default(),
                    format!("{n} is not one of the listeners"),
                ));
            }
        }
        let mut controller = controller_listener(values, &protocols, &listeners)?;
        for (k, v) in values {
            let Some(rest) = k.strip_prefix("listener.name.") else {
                continue;
            };
            let (name, setting) = rest
                .split_once('.')
                .ok_or_else(|| invalid(k, v, "expected listener.name.<listener>.<setting>"))?;
            let listener = listeners
                .iter_mut()
                .chain(controller.iter_mut())
                .find(|l| l.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| invalid(k, v, format!("there is no listener named {name}")))?;
            if !is_listener_key(setting) {
                return Err(ConfigError::UnknownSetting(k.clone()));
            }
            listener.settings.insert(setting.to_string(), v.clone());
        }
        for l in listeners.iter_mut().chain(controller.iter_mut()) {
            for (key, v) in values.iter().filter(|(k, _)| is_listener_key(k)) {
                if !l.settings.contains_key(key) {
                    l.settings.insert(key.clone(), v.clone());
                }
            }
            if l.protocol.uses_tls() {
                l.tls = Some(TlsServer::from_listener(l)?);
            }
            if l.protocol.uses_sasl() {
                l.sasl = Some(SaslServer::from_listener(l)?);
            }
        }
        let inter_broker_listener = match (
            values.get("inter.broker.listener.name"),
            values.get("security.inter.broker.protocol"),
        ) {
            (Some(n), Some(_)) => {
                return Err(invalid(
                    "inter.broker.listener.name",
                    n,
                    "give either it or security.inter.broker.protocol",
                ))
            }
            (Some(n), None) => n.trim().to_ascii_uppercase(),
            (None, Some(p)) => SecurityProtocol::parse(p.trim())
                .ok_or_else(|| {
                    invalid(
                        "security.inter.broker.protocol",
                        p,
                        "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                    )
                })?
                .name()
                .to_string(),
            // Kafka's default (security.inter.broker.protocol=PLAINTEXT); a broker with one
            // listener uses it whatever its name.
            (None, None) if listeners.len() == 1 => listeners[0].name.clone(),
            (None, None) => "PLAINTEXT".to_string(),
        };
        let Some(inter) = listeners
            .iter()
            .find(|l| l.name == inter_broker_listener && l.advertised.is_some())
        else {
            return Err(invalid(
                "inter.broker.listener.name",
                &inter_broker_listener,
                "the inter-broker listener must be one of advertised.listeners (Kafka's default is PLAINTEXT: set inter.broker.listener.name)",
            ));
        };
        if voters > 1 && inter.protocol != SecurityProtocol::Plaintext {
            return Err(invalid(
                "inter.broker.listener.name",
                &inter_broker_listener,
                format!(
                    "brokers do not speak {} to each other yet: use a PLAINTEXT listener between brokers",
                    inter.protocol.name()
                ),
            ));
        }
        let per_ip = PerIpLimits::parse(
            values.get("max.connections.per.ip").map(String::as_str),
            values
                .get("max.connections.per.ip.overrides")
                .map(String::as_str),
        )?;
        let raft_tls = match &controller {
            Some(c) if c.protocol == SecurityProtocol::Ssl => {
                let server = c.tls.as_ref().expect("built above for SSL");
                Some(crate::raft::transport::RaftTls::new(
                    server.config.clone(),
                    super::tls::client_config(c)?,
                ))
            }
            _ => None,
        };
        Ok(SecurityConfig {
            listeners,
            inter_broker_listener,
            per_ip,
            raft_tls,
        })
    }

    /// The inter-broker listener.
    pub fn inter_broker(&self) -> &ListenerConfig {
        self.listeners
            .iter()
            .find(|l| l.name == self.inter_broker_listener)
            .expect("resolve checked the inter-broker listener exists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(pairs: &[(&str, &str)]) -> Result<SecurityConfig, String> {
        let values = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SecurityConfig::resolve(&values, None, None, 1).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shorthand_is_one_plaintext_listener() {
        let c = SecurityConfig::resolve(
            &BTreeMap::new(),
            Some("127.0.0.1:0"),
            Some("b1.example:9092"),
            3,
        )
        .unwrap();
        assert_eq!(c.listeners.len(), 1);
        let l = &c.listeners[0];
        assert_eq!(
            (l.name.as_str(), l.protocol),
            ("PLAINTEXT", SecurityProtocol::Plaintext)
        );
        assert_eq!(l.bind, "127.0.0.1:0".parse().unwrap());
        assert_eq!(l.advertised, Some(("b1.example".into(), 9092)));
        assert_eq!(c.inter_broker_listener, "PLAINTEXT");
        let e = SecurityConfig::resolve(
            &[("listeners".to_string(), "PLAINTEXT://:9092".to_string())].into(),
            Some("127.0.0.1:9092"),
            None,
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--listen/--advertise"), "{e}");
    }

    #[test]
    fn named_listeners_map_advertise_and_pick_the_inter_broker_one() {
        let c = resolve(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,internal://127.0.0.1:0",
            ),
            (
                "advertised.listeners",
                "PLAINTEXT://b1.example:9092,INTERNAL://10.0.0.1:9095",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ])
        .unwrap();
        let names: Vec<_> = c.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["PLAINTEXT", "INTERNAL"]);
        assert_eq!(c.inter_broker().advertised, Some(("10.0.0.1".into(), 9095)));
        let c = resolve(&[("listeners", "PLAINTEXT://:0")]).unwrap();
        assert_eq!(c.listeners[0].bind, "0.0.0.0:0".parse().unwrap());
        let host = c.listeners[0].advertised.clone().unwrap().0;
        assert!(!host.is_empty() && host != "0.0.0.0", "{host}");
    }

    #[test]
    fn bad_specs_are_named() {
        let e = |pairs: &[(&str, &str)]| resolve(pairs).unwrap_err();
        let err = e(&[("listeners", "PLAINTEXT//:9092")]);
        assert!(
            err.contains("NAME://HOST:PORT") && err.contains("`listeners`"),
            "{err}"
        );
        let err = e(&[("listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093")]);
        assert!(err.contains("appears twice"), "{err}");
        let err = e(&[("listeners", "PLAINTEXT://:9092,FOO://:9093")]);
        assert!(
            err.contains("maps no security protocol to listener FOO"),
            "{err}"
        );
        let err = e(&[("listeners", "PLAINTEXT://:9092,SSL://:9092")]);
        assert!(err.contains("same port 9092"), "{err}");
        let err = e(&[("listeners", "PLAINTEXT://:99999")]);
        assert!(err.contains("0 to 65535"), "{err}");
        let err = e(&[
            ("listeners", "A://:0,B://:0"),
            ("listener.security.protocol.map", "A:PLAINTEXT,B:PLAINTEXT"),
        ]);
        assert!(err.contains("inter.broker.listener.name"), "{err}");
        let err = e(&[
            ("listeners", "PLAINTEXT://:0"),
            ("advertised.listeners", "OTHER://h:1"),
        ]);
        assert!(err.contains("OTHER is not one of the listeners"), "{err}");
        let err = e(&[
            ("listeners", "PLAINTEXT://:0"),
            ("listener.name.foo.x", "1"),
        ]);
        assert!(err.contains("no listener named foo"), "{err}");
        let err = e(&[
            ("listeners", "PLAINTEXT://:0"),
            ("listener.security.protocol.map", "PLAINTEXT:KERBEROS"),
        ]);
        assert!(err.contains("PLAINTEXT, SSL"), "{err}");
    }
}
