//! Registration without a controller: the one-time import of a legacy single-node data
//! directory (`super::import`), which runs before this node's controller starts.
//!
//! Owns: proposing a broker's registration and unfencing on a one-voter chain whose controller
//! is not running yet. Every start-up after the import goes through the controller runtime
//! (`crate::controller`), single node included. Every decision is the pure controller's
//! (`josefine_meta::controller`); this only proposes.
//! Must never: run on a multi-voter chain (two brokers would each decide for the cluster), or
//! while this node's controller runs.

use josefine_meta::controller::{
    Controller, ControllerSettings, Heartbeat, RegisterDecision, Registration,
};
use josefine_meta::{Applied, Command, MetaError};
use tracing::info;

use super::store::MetadataStore;

/// This broker's endpoint as it registers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Sets the cluster id if the chain has none, then makes sure this broker is registered with
/// `endpoint` and unfenced (leading again the partitions it is the in-sync replica of). The
/// decisions are the pure controller's (`josefine_meta::controller`), as on a cluster.
pub async fn bootstrap_single_node(
    store: &MetadataStore,
    cluster_id: impl FnOnce() -> String,
    endpoint: &Endpoint,
) -> Result<(), MetaError> {
    assert!(
        store.is_sole_voter(),
        "the bootstrap path stands in for the controller only on a one-voter chain"
    );
    if store.image().cluster_id.is_none() {
        store
            .propose(Command::InitCluster {
                cluster_id: cluster_id(),
            })
            .await?;
    }
    let image = store.image();
    let same_endpoint = image.brokers.get(&endpoint.node_id).filter(|b| {
        b.host == endpoint.host
            && b.port == endpoint.port
            && b.rack == endpoint.rack
            && !b.in_controlled_shutdown
    });
    match same_endpoint {
        Some(b) if !b.fenced => {}
        Some(b) => unfence(store, endpoint.node_id, b.epoch).await?,
        None => {
            register(store, endpoint, uuid::Uuid::new_v4().as_u128()).await?;
        }
    }
    Ok(())
}

/// Registers a new incarnation of `endpoint` (the controller moves the old incarnation's
/// leaderships out in the same batch) and unfences it. Returns the broker epoch.
pub async fn register(
    store: &MetadataStore,
    endpoint: &Endpoint,
    incarnation_id: u128,
) -> Result<i64, MetaError> {
    let node_id = endpoint.node_id;
    let image = store.image();
    let mut controller = Controller::activate(&image, 0, ControllerSettings::default());
    let registration = Registration {
        node_id,
        incarnation_id,
        host: endpoint.host.clone(),
        port: endpoint.port,
        rack: endpoint.rack.clone(),
        listeners: Vec::new(),
    };
    let epoch = match controller.register(&image, registration, &[node_id], 0)? {
        RegisterDecision::Existing { epoch } => epoch,
        RegisterDecision::Propose(cmd) => {
            let applied = store.propose(cmd).await?;
            registered_epoch(&applied)
                .unwrap_or_else(|| panic!("a registration applied as {applied:?}"))
        }
    };
    unfence(store, node_id, epoch).await?;
    info!(
        node_id,
        epoch, "broker registered and unfenced (single-node bootstrap)"
    );
    Ok(epoch)
}

fn registered_epoch(applied: &Applied) -> Option<i64> {
    match applied {
        Applied::BrokerRegistered { epoch, .. } => Some(*epoch),
        Applied::Batch(all) => all.iter().find_map(registered_epoch),
        _ => None,
    }
}

/// Unfences registration `epoch` of `node_id` as the controller does on a caught-up heartbeat
/// (with the elections that hand it back its partitions). On one node the broker is caught up
/// by construction: this store is its image.
async fn unfence(store: &MetadataStore, node_id: i32, epoch: i64) -> Result<(), MetaError> {
    let image = store.image();
    let mut controller = Controller::activate(&image, 0, ControllerSettings::default());
    let heartbeat = Heartbeat {
        node_id,
        broker_epoch: epoch,
        current_position: image.position,
        want_fence: false,
        want_shutdown: false,
    };
    match controller.heartbeat(&image, heartbeat, 0) {
        (reply, _) if reply.error.is_some() => Err(reply.error.expect("checked")),
        (_, Some(cmd)) => store.propose(cmd).await.map(drop),
        (_, None) => Ok(()),
    }
}
