//! The durable local command log: the metadata backend of a single-node broker.
//!
//! Owns: one append-only file of length-prefixed encoded [`Command`]s. Each entry is
//! `len u32 (big endian) | Command::encode()` (which carries its own version and CRC).
//! `append` writes one entry and fsyncs before returning, so a command that was answered as
//! applied survives a crash. `open` replays every entry and truncates a torn tail (a partial or
//! corrupt last entry, from a crash mid-write) so the next append starts at a clean boundary.
//! Must never: return a command it could not verify, or keep a corrupt tail that later appends
//! would bury in the middle of the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::command::{Command, COMMAND_BYTES_MAX};
use crate::MetaError;

/// The local command log file.
pub struct CommandLog {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    entries: u64,
}

/// What `open` found.
pub struct Replay {
    pub commands: Vec<Command>,
    /// Bytes dropped from a torn or corrupt tail (0 after a clean run).
    pub truncated_bytes: u64,
}

impl CommandLog {
    /// Opens (creating if needed) the log at `path`, returning it and the commands in it.
    pub fn open(path: &Path) -> Result<(CommandLog, Replay), MetaError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut commands = Vec::new();
        let mut pos = 0usize;
        while data.len() - pos >= 4 {
            let len = u32::from_be_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            if len > COMMAND_BYTES_MAX || data.len() - pos - 4 < len {
                break;
            }
            match Command::decode(&data[pos + 4..pos + 4 + len]) {
                Ok(cmd) => commands.push(cmd),
                Err(_) => break,
            }
            pos += 4 + len;
        }
        let truncated_bytes = (data.len() - pos) as u64;
        if truncated_bytes > 0 {
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let log = CommandLog {
            path: path.to_path_buf(),
            file,
            len_bytes: pos as u64,
            entries: commands.len() as u64,
        };
        Ok((
            log,
            Replay {
                commands,
                truncated_bytes,
            },
        ))
    }

    /// Appends one command and fsyncs. On error the file is cut back to its previous length so a
    /// half-written entry never precedes a later one.
    pub fn append(&mut self, cmd: &Command) -> Result<u64, MetaError> {
        let encoded = cmd.encode();
        let mut entry = Vec::with_capacity(4 + encoded.len());
        entry.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        entry.extend_from_slice(&encoded);
        let result = self
            .file
            .write_all(&entry)
            .and_then(|_| self.file.sync_data());
        if let Err(e) = result {
            let _ = self.file.set_len(self.len_bytes);
            return Err(MetaError::Io(e));
        }
        self.len_bytes += entry.len() as u64;
        self.entries += 1;
        Ok(self.entries)
    }

    /// Number of entries in the log.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::TopicId;

    fn cmds() -> Vec<Command> {
        vec![
            Command::InitCluster {
                cluster_id: "c".into(),
            },
            Command::RegisterBroker {
                node_id: 1,
                incarnation_id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
            },
            Command::DeleteTopic {
                topic_id: TopicId([3; 16]),
            },
        ]
    }

    #[test]
    fn append_then_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.log");
        {
            let (mut log, replay) = CommandLog::open(&path).unwrap();
            assert!(replay.commands.is_empty());
            for c in cmds() {
                log.append(&c).unwrap();
            }
        }
        let (log, replay) = CommandLog::open(&path).unwrap();
        assert_eq!(replay.commands, cmds());
        assert_eq!(replay.truncated_bytes, 0);
        assert_eq!(log.entries(), 3);
    }

    #[test]
    fn torn_or_corrupt_tail_is_dropped_at_every_position_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.log");
        {
            let (mut log, _) = CommandLog::open(&path).unwrap();
            for c in cmds() {
                log.append(&c).unwrap();
            }
        }
        let full = std::fs::read(&path).unwrap();
        let first_two = 4 + cmds()[0].encode().len() + 4 + cmds()[1].encode().len();
        for cut in first_two..full.len() {
            // Truncated tail.
            std::fs::write(&path, &full[..cut]).unwrap();
            let (_, replay) = CommandLog::open(&path).unwrap();
            assert_eq!(replay.commands, cmds()[..2].to_vec(), "cut at {cut}");
            // Corrupted tail byte (same length).
            let mut corrupt = full.clone();
            corrupt[cut] ^= 0x40;
            std::fs::write(&path, &corrupt).unwrap();
            let (mut log, replay) = CommandLog::open(&path).unwrap();
            assert_eq!(replay.commands, cmds()[..2].to_vec(), "corrupt at {cut}");
            // A later append lands on a clean boundary and replays.
            log.append(&cmds()[2]).unwrap();
            drop(log);
            let (_, replay) = CommandLog::open(&path).unwrap();
            assert_eq!(replay.commands, cmds(), "append after repair at {cut}");
        }
    }
}
