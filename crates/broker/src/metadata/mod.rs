//! Cluster metadata on this broker: the chain is its only backend.
//!
//! Follow a change: a handler calls [`store::MetadataStore::propose`] -> the command's encoding
//! becomes one chain block (`crate::raft`) -> once committed, the chain runtime hands the block
//! to the [`applier`] thread, which applies it to the `josefine_meta::Image`, carries out its
//! partition file effects and publishes the image -> the store answers the proposer with that
//! block's result. Reads take the published image ([`store::MetadataStore::image`]).
//!
//! - [`store`]: propose / image / position / chain status; starts the chain and the applier.
//! - [`applier`]: blocks -> image -> file effects -> published image; snapshots for compaction.
//! - [`bootstrap`]: registration for the legacy import, which runs before the controller.
//! - [`import`]: one-time import of a single-node data directory's `metadata.log`.
//! - [`identity`]: `cluster.properties` (node id, voters, cluster id), checked before any
//!   port is bound.
//!
//! Must never: keep a second metadata store, or change the image except by applying chain
//! blocks.

pub mod applier;
pub mod bootstrap;
pub mod identity;
pub mod import;
pub mod store;

pub use store::{MetadataStore, StoreSettings};
