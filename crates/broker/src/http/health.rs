//! `/health/ready`: whether this broker should receive traffic, with the reason when not.
//!
//! Owns: the list of readiness checks and their JSON form. Must never: wait for anything
//! (a probe reads flags, the image and watches), or report ready while shutting down.

use std::fmt::Write as _;

use crate::metrics::{json_string, Metrics};

/// How far (in chain blocks) the applied image may trail the known commit point and still
/// count as caught up: a burst of metadata changes (many topics created at once) applies within
/// moments and must not flap readiness.
pub const READY_METADATA_LAG_BLOCKS_MAX: u64 = 64;

/// The readiness verdict and each check behind it.
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<(&'static str, bool)>,
}

impl Readiness {
    /// `{"ready":false,"checks":{"kafka_listener":true,...}}`
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{{\"ready\":{},\"checks\":{{", self.ready);
        for (i, (name, ok)) in self.checks.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(&mut out, name);
            let _ = write!(out, ":{ok}");
        }
        out.push_str("}}\n");
        out
    }
}

/// Evaluates every check now.
pub fn readiness(metrics: &Metrics) -> Readiness {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &metrics.ready;
    let broker = metrics.broker();
    let (unfenced, caught_up, offsets_loaded) = match &broker {
        None => (false, false, false),
        Some(b) => {
            let image = b.metadata.image();
            let me = image.brokers.get(&b.config.node_id);
            let unfenced = me.is_some_and(|m| !m.fenced && !m.in_controlled_shutdown);
            let commit = b.metadata.chain_status().commit.height;
            let caught_up = commit.saturating_sub(image.position) <= READY_METADATA_LAG_BLOCKS_MAX;
            (unfenced, caught_up, b.groups().all_loaded())
        }
    };
    let checks = vec![
        ("kafka_listener", r.kafka_listener.load(Relaxed)),
        ("logs_recovered", r.logs_recovered.load(Relaxed)),
        ("image_applied", r.image_applied.load(Relaxed)),
        ("consumer_offsets_loaded", offsets_loaded),
        ("unfenced", unfenced),
        ("metadata_caught_up", caught_up),
        ("not_shutting_down", !r.shutting_down.load(Relaxed)),
    ];
    Readiness {
        ready: checks.iter().all(|(_, ok)| *ok),
        checks,
    }
}
