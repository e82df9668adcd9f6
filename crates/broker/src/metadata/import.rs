//! One-time import of a single-node data directory's local metadata log into the chain.
//!
//! Owns: `metadata.log` (the metadata backend before the chain: length-prefixed commands, see
//! `josefine_meta::command_log`), `metadata.log.import-progress` while an import runs, and
//! the rename to `metadata.log.imported` when it is done. Every old command is proposed in
//! order, as the bootstrap path of a one-voter chain would: old registrations (which carry no
//! incarnation id) become new incarnations and are unfenced at once, since every broker the old
//! log names was live in it. Progress is recorded after each command, so an import interrupted
//! by a crash resumes where it stopped (the one command in flight may be proposed twice; apply
//! refuses the repeat of a creation, deletion, id block or registration, and a repeated config
//! change sets the same values).
//! Must never: import into a chain that already holds other metadata (two histories cannot be
//! merged), or on a multi-voter chain (the import stands in for the controller), or delete the
//! old log (it is renamed and kept).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use josefine_meta::{Command, CommandLog, MetaError};
use tracing::{info, warn};

use super::bootstrap::{self, Endpoint};
use super::store::MetadataStore;
use crate::error::BrokerError;

/// The local metadata log of the single-node broker before the chain.
pub const LEGACY_LOG: &str = "metadata.log";
/// What the legacy log is renamed to once imported.
pub const IMPORTED_LOG: &str = "metadata.log.imported";
/// Commands imported so far (u64 big endian), while an import runs.
const PROGRESS_FILE: &str = "metadata.log.import-progress";

/// True when `data_dir` holds a legacy metadata log not yet imported.
pub fn pending(data_dir: &Path) -> bool {
    data_dir.join(LEGACY_LOG).exists()
}

/// Imports `<data_dir>/metadata.log` into the chain through `store` (a one-voter chain this
/// node leads, caught up, with nothing else proposing). Returns the commands imported.
pub async fn import_legacy_log(
    store: &MetadataStore,
    data_dir: &Path,
) -> Result<usize, BrokerError> {
    let refuse = |reason: String| BrokerError::Import(format!("{}: {reason}", data_dir.display()));
    if !store.is_sole_voter() {
        return Err(refuse(format!(
            "{LEGACY_LOG} of a single-node broker can only be imported by a one-voter chain: start it once without --voters first"
        )));
    }
    let path = data_dir.join(LEGACY_LOG);
    let progress_path = data_dir.join(PROGRESS_FILE);
    let (commands, mut progress, done) = {
        let path = path.clone();
        let progress_path = progress_path.clone();
        tokio::task::spawn_blocking(move || -> Result<_, BrokerError> {
            let (_, replay) = CommandLog::open(&path)?;
            if replay.truncated_bytes > 0 {
                warn!(
                    bytes = replay.truncated_bytes,
                    "dropped a torn tail from the legacy metadata log"
                );
            }
            let (progress, done) = Progress::open(&progress_path)?;
            Ok((replay.commands, progress, done))
        })
        .await
        .expect("import reader panicked")?
    };
    if done == 0 && store.image().cluster_id.is_some() {
        return Err(refuse(format!(
            "the chain already holds metadata and {LEGACY_LOG} was never imported; refusing to merge two histories (move {LEGACY_LOG} away to keep the chain's)"
        )));
    }
    info!(
        commands = commands.len(),
        resume_at = done,
        "importing the legacy metadata log into the chain"
    );
    for (i, cmd) in commands.iter().enumerate().skip(done as usize) {
        import_one(store, cmd)
            .await
            .map_err(|e| refuse(format!("command {i} ({}): {e}", kind(cmd))))?;
        progress =
            tokio::task::spawn_blocking(move || progress.record(i as u64 + 1).map(|()| progress))
                .await
                .expect("progress writer panicked")?;
    }
    let imported = commands.len();
    tokio::task::spawn_blocking({
        let data_dir = data_dir.to_path_buf();
        move || finish(&data_dir, &path, &progress_path)
    })
    .await
    .expect("import finisher panicked")?;
    info!(
        commands = imported,
        position = store.position(),
        "legacy metadata log imported; kept as {IMPORTED_LOG}"
    );
    Ok(imported)
}

/// Proposes one old command. Old registrations become new, unfenced incarnations. A command
/// the chain refuses is logged and skipped (the old store validated each before writing it,
/// so only a repeat after an interrupted import is refused); losing the chain is an error.
async fn import_one(store: &MetadataStore, cmd: &Command) -> Result<(), MetaError> {
    let result = match cmd {
        Command::RegisterBroker {
            node_id,
            incarnation_id,
            host,
            port,
            rack,
        } => {
            let endpoint = Endpoint {
                node_id: *node_id,
                host: host.clone(),
                port: *port,
                rack: rack.clone(),
            };
            let incarnation = match *incarnation_id {
                0 => uuid::Uuid::new_v4().as_u128(),
                id => id,
            };
            bootstrap::register(store, &endpoint, incarnation)
                .await
                .map(drop)
        }
        other => store.propose(other.clone()).await.map(drop),
    };
    match result {
        Ok(()) => Ok(()),
        Err(
            e
            @ (MetaError::NotController { .. } | MetaError::TimedOut(_) | MetaError::ShuttingDown),
        ) => Err(e),
        Err(e) => {
            warn!(
                command = kind(cmd),
                "legacy metadata command not imported: {e}"
            );
            Ok(())
        }
    }
}

fn kind(cmd: &Command) -> &'static str {
    match cmd {
        Command::InitCluster { .. } => "InitCluster",
        Command::RegisterBroker { .. } => "RegisterBroker",
        Command::CreateTopic { .. } => "CreateTopic",
        Command::DeleteTopic { .. } => "DeleteTopic",
        Command::AllocateProducerIds { .. } => "AllocateProducerIds",
        Command::AlterTopicConfigs { .. } => "AlterTopicConfigs",
        Command::AlterBrokerConfigs { .. } => "AlterBrokerConfigs",
        Command::CreatePartitions { .. } => "CreatePartitions",
        _ => "a cluster command",
    }
}

/// Renames the legacy log to [`IMPORTED_LOG`], then removes the progress file.
fn finish(data_dir: &Path, log: &Path, progress: &Path) -> Result<(), BrokerError> {
    fs::rename(log, data_dir.join(IMPORTED_LOG))?;
    fs::File::open(data_dir)?.sync_all()?;
    match fs::remove_file(progress) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

/// The progress file: 8 bytes, rewritten in place and synced after every command.
struct Progress {
    file: fs::File,
}

impl Progress {
    fn open(path: &Path) -> Result<(Progress, u64), BrokerError> {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let done = match buf.len() {
            0 => 0,
            8 => u64::from_be_bytes(buf.try_into().expect("8 bytes")),
            n => {
                return Err(BrokerError::Import(format!(
                    "{} holds {n} bytes, not 8: an import progress file from something else?",
                    path.display()
                )))
            }
        };
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok((Progress { file }, done))
    }

    fn record(&mut self, done: u64) -> Result<(), BrokerError> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&done.to_be_bytes())?;
        self.file.sync_data()?;
        Ok(())
    }
}
