//! The data directory's identity: which node, which voter set and which cluster it belongs to.
//!
//! Owns: `<data-dir>/cluster.properties` (format in `docs/data-dir.md`), written at the first
//! start and checked at every start *before any port is bound*, so a mistyped `--node-id`,
//! `--voters` or `--cluster-id` stops the process with one clear line instead of joining (or
//! splitting) the wrong chain. The voter set of a chain is static: a chain started with other
//! voters than the ones its blocks were committed under could elect two leaders.
//! Must never: rewrite a recorded value silently. The one exception is the address of a sole
//! voter: a one-voter chain has no peer that knows its old address, so moving it is safe and
//! the file follows.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{voters_to_string, Config, Voter};

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "cluster.properties";

/// Version of the identity file's format.
const IDENTITY_VERSION: &str = "1";

/// Largest identity file read: it holds three short lines.
const IDENTITY_BYTES_MAX: u64 = 64 * 1024;

/// What a data directory says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node_id: i32,
    /// `ID@HOST:PORT,...` as first given (or as a sole voter's address last moved to).
    pub voters: String,
    /// Known once the chain has applied `InitCluster`.
    pub cluster_id: Option<String>,
}

/// Why this start does not match the data directory. Each message is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("data directory {dir} belongs to node {stored}, not --node-id {given}")]
    NodeId {
        dir: String,
        stored: i32,
        given: i32,
    },
    #[error("data directory {dir} was started with --voters {stored}; this start gives {given} (the voter set of a chain cannot change)")]
    Voters {
        dir: String,
        stored: String,
        given: String,
    },
    #[error("data directory {dir} belongs to cluster {stored}, not --cluster-id {given}")]
    ClusterId {
        dir: String,
        stored: String,
        given: String,
    },
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Reads the identity file; `None` when the directory has none yet.
pub fn read(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = file_path(data_dir);
    let unreadable = |reason: String| IdentityError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let text = match fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if m.len() > IDENTITY_BYTES_MAX => {
            return Err(unreadable(format!(
                "larger than {IDENTITY_BYTES_MAX} bytes"
            )))
        }
        Ok(_) => fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?,
    };
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| unreadable(format!("line {line:?} is not key=value")))?;
        values.insert(k.trim().to_string(), v.trim().to_string());
    }
    if values.get("version").map(String::as_str) != Some(IDENTITY_VERSION) {
        return Err(unreadable(format!(
            "unknown version {:?} (expected {IDENTITY_VERSION})",
            values.get("version")
        )));
    }
    let node_id = values
        .get("node.id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| unreadable("node.id missing or not a number".into()))?;
    let voters = values
        .get("voters")
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| unreadable("voters missing".into()))?;
    let cluster_id = values.get("cluster.id").filter(|v| !v.is_empty()).cloned();
    Ok(Some(Identity {
        node_id,
        voters,
        cluster_id,
    }))
}

/// Writes the identity file atomically (temporary file, fsync, rename, fsync the directory).
pub fn write(data_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let path = file_path(data_dir);
    let err = |source| IdentityError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut text = format!(
        "# Josefine data directory identity: checked at every start (docs/data-dir.md)\n\
         version={IDENTITY_VERSION}\nnode.id={}\nvoters={}\n",
        id.node_id, id.voters
    );
    if let Some(c) = &id.cluster_id {
        text.push_str(&format!("cluster.id={c}\n"));
    }
    fs::create_dir_all(data_dir).map_err(err)?;
    let tmp = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(err)
}

/// The id of the only voter, when there is one voter.
fn sole_voter(voters: &str) -> Option<&str> {
    if voters.contains(',') {
        return None;
    }
    voters.split_once('@').map(|(id, _)| id)
}

/// Checks this start against the data directory and records what is new (the whole identity
/// at the first start; a sole voter's moved address). Call before binding any port.
pub fn check_and_record(config: &Config) -> Result<Identity, IdentityError> {
    let dir = config.data_dir.display().to_string();
    let given_voters = voters_to_string(&config.voters);
    let given_cluster = config.broker.cluster_id.clone();
    let Some(mut stored) = read(&config.data_dir)? else {
        let id = Identity {
            node_id: config.node_id,
            voters: given_voters,
            cluster_id: given_cluster,
        };
        write(&config.data_dir, &id)?;
        return Ok(id);
    };
    if stored.node_id != config.node_id {
        return Err(IdentityError::NodeId {
            dir,
            stored: stored.node_id,
            given: config.node_id,
        });
    }
    if stored.voters != given_voters {
        let moved_sole_voter = sole_voter(&stored.voters).is_some()
            && sole_voter(&stored.voters) == sole_voter(&given_voters);
        if !moved_sole_voter {
            return Err(IdentityError::Voters {
                dir,
                stored: stored.voters,
                given: given_voters,
            });
        }
        stored.voters = given_voters;
        write(&config.data_dir, &stored)?;
    }
    if let (Some(s), Some(g)) = (&stored.cluster_id, &given_cluster) {
        if s != g {
            return Err(IdentityError::ClusterId {
                dir,
                stored: s.clone(),
                given: g.clone(),
            });
        }
    }
    Ok(stored)
}

/// Records the cluster id once the chain has it (no-op when already recorded).
pub fn record_cluster_id(data_dir: &Path, cluster_id: &str) -> Result<(), IdentityError> {
    let Some(mut id) = read(data_dir)? else {
        return Ok(());
    };
    if id.cluster_id.as_deref() == Some(cluster_id) {
        return Ok(());
    }
    id.cluster_id = Some(cluster_id.to_string());
    write(data_dir, &id)
}

/// The voters recorded for a data directory, parsed (for tools and tests).
pub fn stored_voters(data_dir: &Path) -> Result<Option<Vec<Voter>>, IdentityError> {
    Ok(read(data_dir)?.map(|id| {
        id.voters
            .split(',')
            .filter_map(|p| p.split_once('@'))
            .filter_map(|(n, a)| {
                Some(Voter {
                    node_id: n.parse().ok()?,
                    raft_addr: a.to_string(),
                })
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;

    fn config(dir: &Path, args: &[&str]) -> Config {
        let mut full = vec!["josefine", "--data-dir", dir.to_str().unwrap()];
        full.extend_from_slice(args);
        let cli = <crate::config::Cli as clap::Parser>::try_parse_from(full).unwrap();
        let serve: ServeArgs = cli.serve_args();
        Config::resolve(serve).unwrap()
    }

    #[test]
    fn first_start_records_and_later_starts_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let three = "1@127.0.0.1:19001,2@127.0.0.1:19002,3@127.0.0.1:19003";
        let id = check_and_record(&config(dir.path(), &["--voters", three])).unwrap();
        assert_eq!(id.voters, three);
        assert_eq!(id.cluster_id, None);
        // Same again: fine.
        check_and_record(&config(dir.path(), &["--voters", three])).unwrap();
        // Another voter list, another node id: refused, naming both.
        let e = check_and_record(&config(
            dir.path(),
            &["--voters", "1@127.0.0.1:19001,2@127.0.0.1:19002"],
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(three) && e.contains("cannot change"), "{e}");
        let e = check_and_record(&config(dir.path(), &["--node-id", "2", "--voters", three]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to node 1"), "{e}");
        // The cluster id, once known, must match a given one.
        record_cluster_id(dir.path(), "abc").unwrap();
        check_and_record(&config(dir.path(), &["--voters", three])).unwrap();
        check_and_record(&config(
            dir.path(),
            &["--voters", three, "--cluster-id", "abc"],
        ))
        .unwrap();
        let e = check_and_record(&config(
            dir.path(),
            &["--voters", three, "--cluster-id", "xyz"],
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("belongs to cluster abc"), "{e}");
    }

    #[test]
    fn a_sole_voter_may_move_its_address() {
        let dir = tempfile::tempdir().unwrap();
        check_and_record(&config(dir.path(), &["--raft-listen", "127.0.0.1:19011"])).unwrap();
        let id =
            check_and_record(&config(dir.path(), &["--raft-listen", "127.0.0.1:19012"])).unwrap();
        assert_eq!(id.voters, "1@127.0.0.1:19012");
        assert_eq!(
            read(dir.path()).unwrap().unwrap().voters,
            "1@127.0.0.1:19012"
        );
        // Growing a one-voter chain into three voters is a voter change: refused.
        let e = check_and_record(&config(
            dir.path(),
            &["--voters", "1@127.0.0.1:19012,2@127.0.0.1:19013"],
        ))
        .unwrap_err();
        assert!(matches!(e, IdentityError::Voters { .. }), "{e}");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), "version=9\n").unwrap();
        let e = check_and_record(&config(dir.path(), &[])).unwrap_err();
        assert!(matches!(e, IdentityError::Unreadable { .. }), "{e}");
    }
}
