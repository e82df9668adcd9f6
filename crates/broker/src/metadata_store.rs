//! The metadata store: `propose(command) -> result once applied`, and cheap image snapshots.
//!
//! Owns: the single applier that orders metadata commands, makes them durable, applies them to
//! the [`Image`] and carries out their file side effects (partition logs). Handlers call
//! [`MetadataStore::propose`] and read [`MetadataStore::image`]; they never see the backend.
//! Today the backend is the durable local command log (append + fsync, replay on start); the
//! Chained Raft work replaces the backend with the chain without changing this interface.
//! Must never: apply a command before it is durable, answer a proposal before it is applied, or
//! run its blocking fsyncs on the async workers (the applier is its own thread).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use josefine_meta::controller::{Controller, ControllerSettings, Heartbeat};
use josefine_meta::{Applied, Command, CommandLog, Image, MetaError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::error::BrokerError;
use crate::limits::METADATA_PROPOSALS_QUEUED_MAX;
use crate::partitions::PartitionRegistry;

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Applied, MetaError>>,
}

/// Handle to the metadata store. Cheap to share behind an `Arc`.
pub struct MetadataStore {
    proposals: mpsc::Sender<Proposal>,
    image: watch::Receiver<Arc<Image>>,
}

impl MetadataStore {
    /// Replays the command log at `path`, reconciles partition logs with the image, and starts
    /// the applier thread. The thread ends when the last `MetadataStore` is dropped.
    pub fn open(
        path: &Path,
        partitions: Arc<PartitionRegistry>,
    ) -> Result<(MetadataStore, JoinHandle<()>), BrokerError> {
        let (mut log, replay) = CommandLog::open(path)?;
        if replay.truncated_bytes > 0 {
            warn!(
                bytes = replay.truncated_bytes,
                "dropped a torn tail from the metadata command log"
            );
        }
        let mut image = Image::default();
        for cmd in &replay.commands {
            // A command that failed on its first apply fails identically on replay: a no-op.
            let _ = apply_local(&mut image, cmd);
        }
        info!(
            commands = replay.commands.len(),
            topics = image.topics.len(),
            "metadata replayed"
        );
        partitions.reconcile(&image)?;
        let (image_tx, image_rx) = watch::channel(Arc::new(image.clone()));
        let (tx, mut rx) = mpsc::channel::<Proposal>(METADATA_PROPOSALS_QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("josefine-meta".into())
            .spawn(move || {
                while let Some(Proposal { cmd, reply }) = rx.blocking_recv() {
                    let result = apply_one(&mut log, &mut image, &partitions, &cmd);
                    if result.is_ok() {
                        image_tx.send_replace(Arc::new(image.clone()));
                    }
                    let _ = reply.send(result);
                }
            })?;
        Ok((
            MetadataStore {
                proposals: tx,
                image: image_rx,
            },
            thread,
        ))
    }

    /// Proposes a command; resolves once it is durable and applied (or rejected).
    pub async fn propose(&self, cmd: Command) -> Result<Applied, MetaError> {
        // Cheap early rejection; the applier validates again against the image it applies to.
        self.image().validate(&cmd)?;
        let (reply, rx) = oneshot::channel();
        self.proposals
            .send(Proposal { cmd, reply })
            .await
            .map_err(|_| MetaError::ShuttingDown)?;
        rx.await.map_err(|_| MetaError::ShuttingDown)?
    }

    /// The current image (an `Arc` clone: no copying).
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every published image.
    pub fn subscribe_image(&self) -> watch::Receiver<Arc<Image>> {
        self.image.clone()
    }
}

fn apply_one(
    log: &mut CommandLog,
    image: &mut Image,
    partitions: &PartitionRegistry,
    cmd: &Command,
) -> Result<Applied, MetaError> {
    image.validate(cmd)?;
    log.append(cmd)?;
    let applied = apply_local(image, cmd);
    let applied = match applied {
        Ok(a) => a,
        Err(e) => {
            // validate() just passed on this same image: apply must agree.
            panic!("metadata apply disagreed with validate for {cmd:?}: {e}");
        }
    };
    if let Err(e) = partitions.on_applied(&applied, image) {
        // The command is durable and applied; the files are retried at the next start.
        error!("metadata side effect failed for {cmd:?}: {e}");
    }
    Ok(applied)
}

/// Applies one command of the local log at the next position. With no controller runtime, the
/// local store stands in for one: a registration is unfenced at once (as if the broker had
/// heartbeated, caught up) and leads again the partitions it is the ISR survivor of (derived,
/// so the log holds only the registration and replay repeats it).
fn apply_local(image: &mut Image, cmd: &Command) -> Result<Applied, MetaError> {
    image.advance_to(image.position + 1);
    let applied = image.apply(cmd)?;
    let registered = match &applied {
        Applied::Batch(all) => all.iter().find_map(registration),
        one => registration(one),
    };
    if let Some((node_id, broker_epoch)) = registered {
        let mut controller = Controller::activate(image, 0, ControllerSettings::default());
        let caught_up = Heartbeat {
            node_id,
            broker_epoch,
            current_position: image.position,
            want_fence: false,
            want_shutdown: false,
        };
        if let (_, Some(unfence)) = controller.heartbeat(image, caught_up, 0) {
            let _ = image.apply(&unfence);
        }
    }
    Ok(applied)
}

fn registration(applied: &Applied) -> Option<(i32, i64)> {
    match applied {
        Applied::BrokerRegistered { node_id, epoch } => Some((*node_id, *epoch)),
        _ => None,
    }
}
