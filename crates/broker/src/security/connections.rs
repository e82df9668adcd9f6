//! Kafka's `max.connections.per.ip` and `max.connections.per.ip.overrides`: how many
//! connections one address may hold open at once, across every listener.
//!
//! Owns: the per-address counts and the permits that keep them (a connection holds its
//! [`IpPermit`] until it closes; dropping it gives the slot back). Must never: let the count
//! map grow with addresses that hold no connection (an entry goes with its last permit).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use crate::config::ConfigError;

/// The per-address limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerIpLimits {
    /// `max.connections.per.ip` (Kafka's default: 2147483647, i.e. no limit).
    pub default: u32,
    /// `max.connections.per.ip.overrides`, hosts resolved to their addresses.
    pub overrides: HashMap<IpAddr, u32>,
}

impl PerIpLimits {
    /// Kafka's default: no per-address limit.
    pub fn unlimited() -> PerIpLimits {
        PerIpLimits {
            default: i32::MAX as u32,
            overrides: HashMap::new(),
        }
    }

    /// Parses `max.connections.per.ip` and `max.connections.per.ip.overrides`
    /// (`host:count,ip:count`; a host name stands for every address it resolves to).
    pub fn parse(
        default: Option<&str>,
        overrides: Option<&str>,
    ) -> Result<PerIpLimits, ConfigError> {
        let invalid = |key: &str, value: &str, reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let mut limits = PerIpLimits::unlimited();
        if let Some(v) = default {
            let key = "max.connections.per.ip";
            limits.default = v
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid(key, v, "must be between 0 and 2147483647"))?
                as u32;
        }
        let key = "max.connections.per.ip.overrides";
        for entry in overrides
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (host, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| invalid(key, entry, "expected HOST:COUNT"))?;
            let count = count
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid(key, entry, "the count must be between 0 and 2147483647"))?;
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => (host, 0)
                    .to_socket_addrs()
                    .map_err(|e| invalid(key, entry, &format!("cannot resolve {host}: {e}")))?
                    .map(|a| a.ip())
                    .collect(),
            };
            for ip in addrs {
                limits.overrides.insert(ip, count as u32);
            }
        }
        if limits.default == 0 && limits.overrides.is_empty() {
            return Err(invalid(
                "max.connections.per.ip",
                "0",
                "0 is only allowed with max.connections.per.ip.overrides (as in Kafka)",
            ));
        }
        Ok(limits)
    }

    fn limit_of(&self, ip: IpAddr) -> u32 {
        *self.overrides.get(&ip).unwrap_or(&self.default)
    }
}

/// Connection counts per address, shared by every listener.
#[derive(Debug)]
pub struct PerIpCounter {
    limits: PerIpLimits,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One open connection's slot of its address; gives it back on drop.
#[derive(Debug)]
pub struct IpPermit {
    counter: Arc<PerIpCounter>,
    ip: IpAddr,
}

impl PerIpCounter {
    pub fn new(limits: PerIpLimits) -> Arc<PerIpCounter> {
        Arc::new(PerIpCounter {
            limits,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or None (with the limit) if it holds its
    /// limit already.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<IpPermit, u32> {
        let limit = self.limits.limit_of(ip);
        let mut counts = self.counts.lock().expect("per-ip counts lock");
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(&ip);
            }
            return Err(limit);
        }
        *count += 1;
        Ok(IpPermit {
            counter: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        *self
            .counts
            .lock()
            .expect("per-ip counts lock")
            .get(&ip)
            .unwrap_or(&0)
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut counts = self.counter.counts.lock().expect("per-ip counts lock");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_kafka() {
        let l = PerIpLimits::parse(None, None).unwrap();
        assert_eq!(l.default, i32::MAX as u32);
        let l = PerIpLimits::parse(Some("10"), Some("127.0.0.2:0, localhost:50")).unwrap();
        assert_eq!(l.default, 10);
        assert_eq!(l.limit_of("127.0.0.2".parse().unwrap()), 0);
        assert_eq!(l.limit_of("127.0.0.1".parse().unwrap()), 50);
        assert_eq!(l.limit_of("10.1.1.1".parse().unwrap()), 10);
        for (d, o) in [
            (Some("-1"), None),
            (Some("x"), None),
            (Some("0"), None),
            (None, Some("h")),
            (None, Some("1.2.3.4:-2")),
        ] {
            assert!(PerIpLimits::parse(d, o).is_err(), "{d:?} {o:?}");
        }
    }

    #[test]
    fn permits_count_per_address_and_give_back_on_drop() {
        let counter =
            PerIpCounter::new(PerIpLimits::parse(Some("2"), Some("127.0.0.9:0")).unwrap());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = counter.try_acquire(a).unwrap();
        let _p2 = counter.try_acquire(a).unwrap();
        assert_eq!(counter.try_acquire(a).unwrap_err(), 2);
        let _p3 = counter.try_acquire(b).unwrap();
        drop(p1);
        assert_eq!(counter.count(a), 1);
        let _p4 = counter.try_acquire(a).unwrap();
        assert!(counter.try_acquire("127.0.0.9".parse().unwrap()).is_err());
        assert!(
            counter.counts.lock().unwrap().len() == 2,
            "no entry for a refused address"
        );
    }
}
