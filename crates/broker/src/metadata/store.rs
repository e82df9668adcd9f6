//! The metadata store: `propose(command)` answered once this broker's image has applied it,
//! and cheap snapshots of the current image. The backend is always the chain: a broker without
//! `--voters` is a one-voter chain, so one code path serves one node and many.
//!
//! Owns: the chain server of this process ([`crate::raft::run_chain`]), the applier thread
//! ([`super::applier`]) and the compaction task. A proposal is the command's encoding as one
//! block payload; the store waits until the applier has applied that block and answers with
//! that block's own result. Handlers only see [`MetadataStore::propose`] and
//! [`MetadataStore::image`].
//! Must never: answer a proposal before this broker's image has applied it (a client that
//! created a topic must find it here at once), report an outcome it does not know (a proposal
//! that may still commit answers "outcome unknown", REQUEST_TIMED_OUT), or mutate the image
//! outside the chain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use josefine_chain::limits::PAYLOAD_BYTES_MAX;
use josefine_chain::{BlockId, NodeId, Role};
use josefine_meta::{Applied, Command, Image, MetaError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::info;

use super::applier::{self, Control, RecentResults};
use crate::error::BrokerError;
use crate::limits;
use crate::partitions::PartitionRegistry;
use crate::raft::{self, ChainHandle, ChainNodeConfig, ChainStatus, ProposeFailure};

/// The chain directory inside the data directory.
pub const CHAIN_DIR: &str = "chain";

/// Everything the store needs to start.
#[derive(Debug)]
pub struct StoreSettings {
    pub node_id: NodeId,
    /// Every voter, this node included, with its raft address.
    pub voters: Vec<(NodeId, SocketAddr)>,
    /// Where the raft listener binds.
    pub raft_listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Snapshot (compact the chain) after this many applied blocks...
    pub snapshot_every_blocks: u64,
    /// ...or this many payload bytes of applied blocks.
    pub snapshot_every_bytes: u64,
    /// Receives the raft address's controller and status connections (see `raft::transport`).
    pub non_chain: Option<mpsc::Sender<raft::transport::RaftConnection>>,
    /// Mutual TLS on the raft address (`controller.listener.names` mapped to SSL).
    pub raft_tls: Option<raft::transport::RaftTls>,
}

impl StoreSettings {
    /// Settings from the broker's configuration, with the default snapshot policy.
    pub fn from_config(config: &crate::config::Config) -> StoreSettings {
        StoreSettings {
            node_id: config.node_id as NodeId,
            voters: config.voter_addrs.clone(),
            raft_listen: config.raft_listen,
            data_dir: config.data_dir.clone(),
            snapshot_every_blocks: limits::METADATA_SNAPSHOT_EVERY_BLOCKS,
            snapshot_every_bytes: limits::METADATA_SNAPSHOT_EVERY_BYTES,
            non_chain: None,
            raft_tls: config.security.raft_tls.clone(),
        }
    }
}

/// Handle to the metadata store. Shared behind the broker's `Arc`.
pub struct MetadataStore {
    node_id: NodeId,
    voters: usize,
    chain: Arc<ChainHandle>,
    image: watch::Receiver<Arc<Image>>,
    results: Arc<Mutex<RecentResults>>,
    control: mpsc::Sender<Control>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl MetadataStore {
    /// Opens the chain under `<data_dir>/chain`, binds the raft address and starts the applier.
    /// The image starts empty (or at the chain's snapshot) and follows the chain from there;
    /// no partition file is touched until [`MetadataStore::go_live`].
    pub async fn open(
        settings: StoreSettings,
        partitions: Arc<PartitionRegistry>,
    ) -> Result<MetadataStore, BrokerError> {
        let (apply_tx, apply_rx) = raft::apply_channel();
        let mut cfg = ChainNodeConfig::new(
            settings.node_id,
            settings.voters.clone(),
            settings.data_dir.join(CHAIN_DIR),
        );
        cfg.listen = Some(settings.raft_listen);
        cfg.apply = Some(apply_tx);
        cfg.non_chain = settings.non_chain;
        cfg.tls = settings.raft_tls;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let chain = raft::run_chain(cfg, async {
            let _ = shutdown_rx.await;
        })
        .await
        .map_err(|e| BrokerError::Chain(format!("{e:#}")))?;
        let chain = Arc::new(chain);
        let (image_tx, image_rx) = watch::channel(Arc::new(Image::default()));
        let results = Arc::new(Mutex::new(RecentResults::default()));
        let (control_tx, control_rx) = mpsc::channel(1);
        let (compact_tx, compact_rx) = mpsc::channel(1);
        tokio::spawn(compactor(chain.clone(), compact_rx));
        let applier = applier::spawn(applier::Applier::new(
            partitions,
            settings.data_dir.clone(),
            image_tx,
            results.clone(),
            applier::SnapshotPolicy {
                every_blocks: settings.snapshot_every_blocks.max(1),
                every_bytes: settings.snapshot_every_bytes.max(1),
                requests: compact_tx,
            },
            apply_rx,
            control_rx,
        ))?;
        info!(
            node_id = settings.node_id,
            voters = settings.voters.len(),
            raft = %chain.local_addr(),
            "chain started"
        );
        Ok(MetadataStore {
            node_id: settings.node_id,
            voters: settings.voters.len(),
            chain,
            image: image_rx,
            results,
            control: control_tx,
            shutdown: Mutex::new(Some(shutdown_tx)),
            applier: Mutex::new(Some(applier)),
        })
    }

    /// Proposes a command; resolves once this broker's image has applied its block, with what
    /// applying it did (or why it was a no-op).
    ///
    /// Errors besides the image's own: [`MetaError::NotController`] (this node does not lead
    /// the chain; nothing was proposed), [`MetaError::TimedOut`] (outcome unknown: it may still
    /// commit; a retry is safe because the command carries its decisions and apply
    /// re-validates), an oversized command (refused with the limit in the message).
    pub async fn propose(&self, cmd: Command) -> Result<Applied, MetaError> {
        let payload = encode_fitting(&cmd)?;
        // Cheap early rejection; apply validates again against the image it applies to.
        self.image().validate(&cmd)?;
        let id = self
            .chain
            .propose(Bytes::from(payload))
            .await
            .map_err(|f| self.propose_failure(f))?;
        let deadline = Instant::now() + Duration::from_millis(limits::METADATA_APPLY_WAIT_MS);
        self.wait_for_position(id.height, deadline).await?;
        self.results
            .lock()
            .expect("results lock")
            .take(id)
            .unwrap_or_else(|| {
                Err(MetaError::TimedOut(format!(
                    "block {id} applied but its result was dropped before it was read; outcome unknown"
                )))
            })
    }

    fn propose_failure(&self, f: ProposeFailure) -> MetaError {
        match f {
            ProposeFailure::NotLeader { leader, .. } => MetaError::NotController {
                leader: leader.and_then(|l| i32::try_from(l).ok()),
            },
            ProposeFailure::Busy => MetaError::TimedOut(
                "the metadata chain is busy (too many pending changes or a leadership transfer); nothing was proposed, retry".into(),
            ),
            ProposeFailure::TooLarge => MetaError::InvalidPartitions(format!(
                "a metadata change is at most {PAYLOAD_BYTES_MAX} bytes"
            )),
            ProposeFailure::LeadershipLost => MetaError::TimedOut(
                "chain leadership was lost before the change committed; outcome unknown".into(),
            ),
            ProposeFailure::TimedOut => MetaError::TimedOut(
                "the change did not commit in time (no chain quorum?); outcome unknown".into(),
            ),
            ProposeFailure::Stopped => MetaError::ShuttingDown,
        }
    }

    /// The current image (an `Arc` clone: no copying).
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every published image.
    pub fn subscribe_image(&self) -> watch::Receiver<Arc<Image>> {
        self.image.clone()
    }

    /// The chain height of the last block this broker's image applied.
    pub fn position(&self) -> u64 {
        self.image.borrow().position
    }

    /// Waits until this broker's image has applied the block at `position` (read-your-writes
    /// for a change committed elsewhere), returning that image or later. `TimedOut` at
    /// `deadline`; `ShuttingDown` if the store stopped.
    pub async fn wait_for_position(
        &self,
        position: u64,
        deadline: Instant,
    ) -> Result<Arc<Image>, MetaError> {
        let mut rx = self.image.clone();
        let reached = tokio::time::timeout_at(deadline, async {
            rx.wait_for(|image| image.position >= position)
                .await
                .map(|image| image.clone())
        })
        .await;
        match reached {
            Ok(Ok(image)) => Ok(image),
            Ok(Err(_)) => Err(MetaError::ShuttingDown),
            Err(_) => Err(MetaError::TimedOut(format!(
                "this broker's metadata did not reach position {position} in time (at {})",
                self.position()
            ))),
        }
    }

    /// The chain's consensus state as this node sees it.
    pub fn chain_status(&self) -> ChainStatus {
        self.chain.status()
    }

    /// A receiver that sees every change of [`MetadataStore::chain_status`].
    pub fn watch_chain_status(&self) -> watch::Receiver<ChainStatus> {
        self.chain.watch_status()
    }

    /// Each voter's matched block, as the chain leader knows it (empty elsewhere).
    pub fn watch_progress(&self) -> watch::Receiver<Arc<[raft::VoterProgress]>> {
        self.chain.watch_progress()
    }

    /// The chain's uncommitted tree and the dead branches lately collected (the console's
    /// chain page).
    pub fn watch_chain_tree(&self) -> watch::Receiver<Arc<raft::ChainTree>> {
        self.chain.watch_tree()
    }

    /// If this node leads the chain, hands leadership to the most caught-up other voter and
    /// waits (at most `timeout`) until another node leads: a leaving leader's controlled
    /// shutdown, so the chain does not wait out an election timeout. False if it did not.
    pub async fn hand_over_leadership(&self, timeout: Duration) -> bool {
        if !self.is_leader() {
            return true;
        }
        let progress = self.chain.watch_progress().borrow().clone();
        let Some(to) = progress
            .iter()
            .filter(|v| v.id != self.node_id)
            .filter_map(|v| v.matched.map(|m| (m, v.id)))
            .max()
            .map(|(_, id)| id)
        else {
            return false;
        };
        if !self.chain.transfer_leadership(to).await {
            return false;
        }
        let mut status = self.chain.watch_status();
        let me = self.node_id;
        tokio::time::timeout(
            timeout,
            status.wait_for(|s| s.leader.is_some_and(|l| l != me)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// True while this node leads the chain (only the leader's proposals are accepted).
    pub fn is_leader(&self) -> bool {
        let s = self.chain.status();
        s.role == Role::Leader && s.leader == Some(self.node_id)
    }

    /// The address the raft listener is bound to.
    pub fn raft_addr(&self) -> SocketAddr {
        self.chain.local_addr()
    }

    /// True for a one-voter chain (a single-node broker).
    pub fn is_sole_voter(&self) -> bool {
        self.voters == 1
    }

    /// Waits until this broker has caught up with the chain as far as it can tell by itself:
    /// a leader is known and the image has applied the commit point, which holds a block of
    /// the leader's current term. For a one-voter chain that is "replayed everything it has"
    /// (its own first block commits at its first tick); for a follower it is the leader's
    /// commit as of the leader's first block, which may lag the leader's latest.
    pub async fn wait_caught_up(&self) -> Result<(), MetaError> {
        let mut status = self.chain.watch_status();
        let mut image = self.image.clone();
        let started = Instant::now();
        let mut next_note = started + Duration::from_secs(5);
        loop {
            let s = *status.borrow_and_update();
            let position = image.borrow_and_update().position;
            if s.leader.is_some() && s.commit.term == s.term && position >= s.commit.height {
                info!(
                    position,
                    term = s.term,
                    leader = ?s.leader,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "metadata caught up with the chain"
                );
                return Ok(());
            }
            tokio::select! {
                r = status.changed() => r.map_err(|_| MetaError::ShuttingDown)?,
                r = image.changed() => r.map_err(|_| MetaError::ShuttingDown)?,
                _ = tokio::time::sleep_until(next_note) => {
                    info!(term = s.term, leader = ?s.leader, commit = %s.commit, position, "waiting for the metadata chain (a quorum of voters must be up)");
                    next_note += Duration::from_secs(5);
                }
            }
        }
    }

    /// Starts carrying out partition file effects: reconciles the hosted logs with the image
    /// first (with `strays`, logs the image does not name are renamed `-stray`; only safe once
    /// the image has caught up with the chain leader's commit, see B1 in the design notes),
    /// then opens and deletes logs as later blocks apply.
    pub async fn go_live(&self, strays: bool) -> Result<(), BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::GoLive { strays, reply })
            .await
            .map_err(|_| BrokerError::Meta(MetaError::ShuttingDown))?;
        rx.await
            .map_err(|_| BrokerError::Meta(MetaError::ShuttingDown))?
    }

    /// Stops the chain server and the applier (after what is queued is applied).
    pub async fn shutdown(&self) {
        let stop = self.shutdown.lock().expect("shutdown lock").take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        // The chain loop drops its status sender when it ends; then the apply channel closes.
        let mut status = self.chain.watch_status();
        while status.changed().await.is_ok() {}
        let thread = self.applier.lock().expect("applier lock").take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Encodes `cmd` for one block, refusing it when it does not fit (B7: a command cannot span
/// blocks atomically). The error names the limit; topic creations answer INVALID_PARTITIONS.
pub fn encode_fitting(cmd: &Command) -> Result<Vec<u8>, MetaError> {
    let payload = cmd.encode();
    if payload.len() <= PAYLOAD_BYTES_MAX {
        return Ok(payload);
    }
    let msg = format!(
        "the metadata change is {} bytes; one change is at most {PAYLOAD_BYTES_MAX} bytes \
         (the chain's block payload limit): use fewer partitions, replicas or configs per request",
        payload.len()
    );
    Err(match cmd {
        Command::AlterTopicConfigs { .. } | Command::AlterBrokerConfigs { .. } => {
            MetaError::InvalidConfig(msg)
        }
        _ => MetaError::InvalidPartitions(msg),
    })
}

/// Compacts the chain with the snapshots the applier encodes, one at a time.
async fn compactor(chain: Arc<ChainHandle>, mut requests: mpsc::Receiver<(BlockId, Bytes)>) {
    while let Some((upto, state)) = requests.recv().await {
        let bytes = state.len();
        match chain.compact(upto, state).await {
            Ok(()) => info!(upto = %upto, bytes, "metadata snapshot taken; chain compacted"),
            // A snapshot installed from the leader meanwhile moved the root past `upto`.
            Err(e) => tracing::debug!(upto = %upto, "chain compaction skipped: {e:#}"),
        }
    }
}
