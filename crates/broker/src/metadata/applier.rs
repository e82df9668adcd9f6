//! The applier: committed chain blocks -> the metadata [`Image`] -> partition file effects ->
//! the image handlers read.
//!
//! Owns: one thread that consumes the chain's apply channel in chain order. A snapshot replaces
//! the image (`Image::decode_snapshot`); a block advances the image's position to its height,
//! and a data block's payload is decoded and applied (a payload that does not decode or a
//! command that does not apply is a deterministic no-op on every node, logged). Once live (see
//! [`Control::GoLive`]) it carries out each applied command's file effects
//! (`PartitionRegistry::on_applied`) and brings the hosted replicas' roles in line with the
//! image (`PartitionRegistry::sync_roles`: leader state, epoch cache, followers) *before*
//! publishing the image, so a handler never sees a topic whose logs are not open or a
//! leadership whose leader state does not exist yet. Every so many blocks it hands an encoded snapshot to the
//! store's compaction task.
//! Must never: block the chain loop. It does not: the chain runtime hands blocks over without
//! waiting and keeps a backlog while this thread is busy (slow file effects only delay
//! proposals, never ticks or heartbeats; see `raft`'s module doc). Must never delete a log
//! before it is live: during the start-up replay the image may be stale (B1).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use josefine_chain::{Block, BlockId, BlockKind, Snapshot, GENESIS};
use josefine_meta::{Applied, Command, Image, MetaError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::error::BrokerError;
use crate::limits;
use crate::partitions::PartitionRegistry;
use crate::raft::Applied as ChainApplied;

/// Requests from the store to the applier thread.
pub(crate) enum Control {
    /// The image has caught up: reconcile the hosted logs with it (renaming logs it does not
    /// name to `-stray` when `strays`), then carry out the file effects of every later block.
    GoLive {
        strays: bool,
        reply: oneshot::Sender<Result<(), BrokerError>>,
    },
}

/// Results of recently applied data blocks, for their proposers. Bounded by count and payload
/// bytes (`limits::METADATA_RESULTS_KEPT_*`); the oldest go first.
#[derive(Default)]
pub(crate) struct RecentResults {
    by_block: BTreeMap<BlockId, (Result<Applied, MetaError>, usize)>,
    bytes: usize,
}

impl RecentResults {
    fn insert(&mut self, id: BlockId, result: Result<Applied, MetaError>, payload_bytes: usize) {
        self.bytes += payload_bytes;
        if let Some((_, old)) = self.by_block.insert(id, (result, payload_bytes)) {
            self.bytes -= old;
        }
        while self.by_block.len() > limits::METADATA_RESULTS_KEPT_MAX
            || (self.bytes > limits::METADATA_RESULTS_KEPT_BYTES_MAX && self.by_block.len() > 1)
        {
            let (_, (_, b)) = self.by_block.pop_first().expect("non-empty");
            self.bytes -= b;
        }
    }

    /// The result of block `id`, once (only its proposer asks).
    pub(crate) fn take(&mut self, id: BlockId) -> Option<Result<Applied, MetaError>> {
        let (r, b) = self.by_block.remove(&id)?;
        self.bytes -= b;
        Some(r)
    }
}

/// When to hand a snapshot to the compaction task.
pub(crate) struct SnapshotPolicy {
    pub every_blocks: u64,
    pub every_bytes: u64,
    /// Capacity 1: while a compaction is in flight the next one waits for a later block.
    pub requests: mpsc::Sender<(BlockId, Bytes)>,
}

/// The applier's state; runs on its own thread ([`spawn`]).
pub(crate) struct Applier {
    image: Image,
    partitions: Arc<PartitionRegistry>,
    data_dir: PathBuf,
    live: bool,
    published: watch::Sender<Arc<Image>>,
    results: Arc<Mutex<RecentResults>>,
    snapshots: SnapshotPolicy,
    blocks_since_snapshot: u64,
    bytes_since_snapshot: u64,
    cluster_id_recorded: bool,
    apply: mpsc::Receiver<ChainApplied>,
    control: mpsc::Receiver<Control>,
}

enum Next {
    Control(Control),
    Apply(ChainApplied),
    Stop,
}

impl Applier {
    pub(crate) fn new(
        partitions: Arc<PartitionRegistry>,
        data_dir: PathBuf,
        published: watch::Sender<Arc<Image>>,
        results: Arc<Mutex<RecentResults>>,
        snapshots: SnapshotPolicy,
        apply: mpsc::Receiver<ChainApplied>,
        control: mpsc::Receiver<Control>,
    ) -> Applier {
        Applier {
            image: Image::default(),
            partitions,
            data_dir,
            live: false,
            published,
            results,
            snapshots,
            blocks_since_snapshot: 0,
            bytes_since_snapshot: 0,
            cluster_id_recorded: false,
            apply,
            control,
        }
    }

    fn run(mut self, rt: tokio::runtime::Handle) {
        let mut control_open = true;
        loop {
            let next = rt.block_on(async {
                tokio::select! {
                    biased;
                    c = self.control.recv(), if control_open => c.map(Next::Control),
                    a = self.apply.recv() => Some(a.map_or(Next::Stop, Next::Apply)),
                }
            });
            match next {
                None => control_open = false,
                Some(Next::Stop) => break,
                Some(Next::Control(Control::GoLive { strays, reply })) => {
                    let r = self.go_live(strays);
                    let _ = reply.send(r);
                }
                Some(Next::Apply(first)) => {
                    self.apply_one(first);
                    // Apply what else is queued, then publish once (publishing clones the image).
                    for _ in 1..limits::METADATA_APPLY_PUBLISH_EVERY_MAX {
                        match self.apply.try_recv() {
                            Ok(a) => self.apply_one(a),
                            Err(_) => break,
                        }
                    }
                    self.publish();
                }
            }
        }
        info!(position = self.image.position, "metadata applier stopped");
    }

    fn publish(&mut self) {
        if !self.cluster_id_recorded {
            if let Some(id) = &self.image.cluster_id {
                if let Err(e) = super::identity::record_cluster_id(&self.data_dir, id) {
                    error!("cannot record the cluster id in the data directory: {e}");
                }
                self.cluster_id_recorded = true;
            }
        }
        if self.live {
            // Roles follow the image before handlers see it: a broker the image names leader
            // at epoch E has its leader state of E (and its epoch-cache entry) first.
            self.partitions.sync_roles(&self.image);
        }
        self.published.send_replace(Arc::new(self.image.clone()));
    }

    fn go_live(&mut self, strays: bool) -> Result<(), BrokerError> {
        if strays {
            self.partitions.reconcile(&self.image)?;
        } else {
            self.partitions.open_all(&self.image)?;
        }
        self.live = true;
        self.publish();
        Ok(())
    }

    fn apply_one(&mut self, a: ChainApplied) {
        match a {
            ChainApplied::Snapshot(s) => self.install(s),
            ChainApplied::Block(b) => self.apply_block(b),
        }
    }

    fn install(&mut self, s: Snapshot) {
        let image = if s.root == GENESIS && s.state.is_empty() {
            Image::default()
        } else {
            match Image::decode_snapshot(&s.state) {
                Ok(i) => i,
                // The chain checks its records; an undecodable image is a bug or a foreign
                // data directory. Serving a guess would diverge from every other node.
                Err(e) => panic!("metadata snapshot at block {} does not decode: {e}", s.root),
            }
        };
        assert_eq!(
            image.position, s.root.height,
            "a snapshot's image is the image at its root block"
        );
        let previous = std::mem::replace(&mut self.image, image);
        info!(
            root = %s.root,
            topics = self.image.topics.len(),
            "metadata snapshot installed"
        );
        if self.live {
            if let Err(e) = self.partitions.on_image_replaced(&previous, &self.image) {
                error!("partition files after a metadata snapshot: {e}");
            }
        }
        self.blocks_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
    }

    fn apply_block(&mut self, b: Block) {
        self.image.advance_to(b.id.height);
        if b.kind == BlockKind::Data && !b.payload.is_empty() {
            let result = Command::decode(&b.payload).and_then(|cmd| {
                let r = self.image.apply(&cmd);
                if let Err(e) = &r {
                    info!(block = %b.id, "metadata command not applied (a no-op everywhere): {e}");
                }
                r
            });
            match &result {
                Ok(applied) if self.live => {
                    if let Err(e) = self.partitions.on_applied(applied, &self.image) {
                        // Applied on the chain; the files are reconciled at the next start.
                        error!(block = %b.id, "metadata side effect failed: {e}");
                    }
                }
                Ok(_) => {}
                Err(MetaError::Decode(e)) => {
                    warn!(block = %b.id, "metadata block does not decode (a no-op): {e}")
                }
                Err(_) => {}
            }
            self.results
                .lock()
                .expect("results lock")
                .insert(b.id, result, b.payload.len());
        }
        self.blocks_since_snapshot += 1;
        self.bytes_since_snapshot += b.payload.len() as u64;
        let due = self.blocks_since_snapshot >= self.snapshots.every_blocks
            || self.bytes_since_snapshot >= self.snapshots.every_bytes;
        // No room means a compaction is still running: try again at a later block.
        if due && self.snapshots.requests.capacity() > 0 {
            let state = Bytes::from(self.image.encode_snapshot());
            let _ = self.snapshots.requests.try_send((b.id, state));
            self.blocks_since_snapshot = 0;
            self.bytes_since_snapshot = 0;
        }
    }
}

/// Starts the applier thread. It ends when the chain server stops (its channel closes). A
/// panic (a broken invariant: a snapshot that does not decode, a position going back) aborts
/// the process: a broker whose image stopped following the chain must not keep serving it.
pub(crate) fn spawn(applier: Applier) -> Result<std::thread::JoinHandle<()>, BrokerError> {
    let rt = tokio::runtime::Handle::current();
    Ok(std::thread::Builder::new()
        .name("josefine-meta".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| applier.run(rt));
            if std::panic::catch_unwind(run).is_err() {
                error!("the metadata applier panicked; aborting");
                std::process::abort();
            }
        })?)
}
