//! The status document (`JSTAT001`): what `josefine cluster-status` prints.
//!
//! Owns: rendering the chain's state and the applied image as plain text
//! ([`render_status`]), and fetching a document from a raft address ([`fetch_status`]).
//! Must never: report anything the chain status or the image does not hold (no guessed
//! leaders, epochs or ISRs), or be parsed by programs: the format is for people.

use std::fmt::Write as _;
use std::time::Duration;

use josefine_chain::NodeId;
use josefine_meta::Image;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raft::limits::{STATUS_DOCUMENT_BYTES_MAX, STATUS_IO_TIMEOUT_MS};
use crate::raft::transport::Preface;
use crate::raft::{ChainStatus, VoterProgress};

/// Renders the status of node `me`: its view of the chain, each voter's progress (when `me`
/// leads; `progress` is empty otherwise), the brokers and the partitions of `image`.
pub fn render_status(
    me: NodeId,
    chain: &ChainStatus,
    progress: &[VoterProgress],
    image: &Image,
) -> String {
    let mut out = String::new();
    let leader = chain
        .leader
        .map_or_else(|| "none known".to_string(), |l| l.to_string());
    let _ = writeln!(out, "chain (as node {me} sees it)");
    let _ = writeln!(
        out,
        "  leader {leader}, term {}, this node {:?}",
        chain.term, chain.role
    );
    let _ = writeln!(
        out,
        "  head {}, commit {}, blocks collected {}",
        chain.head, chain.commit, chain.collected_total
    );
    if progress.is_empty() {
        let _ = writeln!(
            out,
            "  voter progress: known by the leader only (ask node {leader})"
        );
    } else {
        let rows = progress.iter().map(|p| {
            let (matched, behind) = match p.matched {
                Some(m) => (
                    m.to_string(),
                    chain.head.height.saturating_sub(m.height).to_string(),
                ),
                None => ("-".into(), "-".into()),
            };
            let note = if p.id == me { "leader" } else { "" };
            vec![p.id.to_string(), matched, behind, note.into()]
        });
        let _ = writeln!(out, "  voter progress:");
        table(
            &mut out,
            &["voter", "matched", "blocks behind", ""],
            rows.collect(),
        );
    }
    let cluster = image.cluster_id.as_deref().unwrap_or("none");
    let _ = writeln!(
        out,
        "\nmetadata image at position {}, digest {:016x}, cluster id {cluster}",
        image.position,
        image.digest()
    );
    let _ = writeln!(out, "\nbrokers ({})", image.brokers.len());
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows = image.brokers.values().map(|b| {
        vec![
            b.node_id.to_string(),
            format!("{}:{}", b.host, b.port),
            b.rack.clone().unwrap_or_else(|| "-".into()),
            b.epoch.to_string(),
            yes_no(b.fenced),
            yes_no(b.in_controlled_shutdown),
        ]
    });
    table(
        &mut out,
        &["id", "endpoint", "rack", "epoch", "fenced", "shutting down"],
        rows.collect(),
    );
    let partitions: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    let _ = writeln!(
        out,
        "\npartitions ({partitions} in {} topics)",
        image.topics.len()
    );
    let list = |ids: &[i32]| {
        let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
        format!("[{}]", ids.join(","))
    };
    let mut rows = Vec::with_capacity(partitions);
    for topic in image
        .topic_ids_by_name
        .values()
        .filter_map(|id| image.topics.get(id))
    {
        for p in &topic.partitions {
            let leader = if p.leader < 0 {
                "none".to_string()
            } else {
                p.leader.to_string()
            };
            rows.push(vec![
                topic.name.clone(),
                p.partition.to_string(),
                leader,
                p.leader_epoch.to_string(),
                list(&p.isr),
                list(&p.replicas),
            ]);
        }
    }
    table(
        &mut out,
        &[
            "topic",
            "partition",
            "leader",
            "leader epoch",
            "isr",
            "replicas",
        ],
        rows,
    );
    out
}

/// Appends `rows` under `header`, columns left-aligned and two spaces apart, indented by two.
fn table(out: &mut String, header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from("  ");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// Why no status document arrived.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} closed the connection without a status document (is it a josefine --raft-listen address?)")]
    Empty { addr: String },
    #[error("{addr} did not send its status document within {timeout_ms} ms")]
    TimedOut { addr: String, timeout_ms: u64 },
}

/// Connects to the raft address `addr` (`host:port`), asks for the status document and returns
/// it. A document longer than `STATUS_DOCUMENT_BYTES_MAX` is cut there, with a note.
pub async fn fetch_status(addr: &str) -> Result<String, StatusError> {
    let timeout_ms = STATUS_IO_TIMEOUT_MS;
    let fetch = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| StatusError::Unreachable {
                addr: addr.into(),
                reason: e.to_string(),
            })?;
        let mut doc = Vec::new();
        let read = async {
            s.write_all(Preface::Status.bytes()).await?;
            (&mut s)
                .take(STATUS_DOCUMENT_BYTES_MAX as u64 + 1)
                .read_to_end(&mut doc)
                .await
        };
        // A server that closes at once (wrong kind of port) may reset the connection.
        let _ = read.await;
        if doc.is_empty() {
            return Err(StatusError::Empty { addr: addr.into() });
        }
        let cut = doc.len() > STATUS_DOCUMENT_BYTES_MAX;
        doc.truncate(STATUS_DOCUMENT_BYTES_MAX);
        let mut text = String::from_utf8_lossy(&doc).into_owned();
        if cut {
            text.push_str("\n[cut at STATUS_DOCUMENT_BYTES_MAX]\n");
        }
        Ok(text)
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), fetch)
        .await
        .map_err(|_| StatusError::TimedOut {
            addr: addr.into(),
            timeout_ms,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use josefine_chain::{BlockId, Role};
    use josefine_meta::{BrokerRegistration, PartitionAssignment, Topic, TopicId};

    fn image() -> Image {
        let mut image = Image {
            position: 118,
            cluster_id: Some("c-1".into()),
            ..Image::default()
        };
        for id in 1..=2 {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    node_id: id,
                    incarnation_id: 7,
                    host: "127.0.0.1".into(),
                    port: 9092 + 100 * id,
                    rack: (id == 1).then(|| "r1".into()),
                    epoch: 10 * id as i64,
                    fenced: id == 2,
                    in_controlled_shutdown: false,
                    listeners: Vec::new(),
                },
            );
        }
        let id = TopicId([1; 16]);
        let mut p0 = PartitionAssignment::led_by_first(0, vec![1]);
        p0.leader_epoch = 3;
        let mut p1 = PartitionAssignment::led_by_first(1, vec![2]);
        p1.leader = PartitionAssignment::NO_LEADER;
        image.topics.insert(
            id,
            Topic {
                topic_id: id,
                name: "orders".into(),
                partitions: vec![p0, p1],
                configs: Default::default(),
            },
        );
        image.topic_ids_by_name.insert("orders".into(), id);
        image
    }

    fn status(role: Role) -> ChainStatus {
        ChainStatus {
            role,
            term: 3,
            leader: Some(1),
            head: BlockId::new(3, 120),
            commit: BlockId::new(3, 118),
            collected_total: 4,
        }
    }

    #[test]
    fn the_leader_renders_chain_progress_brokers_and_partitions() {
        let progress = [
            VoterProgress {
                id: 1,
                matched: Some(BlockId::new(3, 120)),
            },
            VoterProgress {
                id: 2,
                matched: Some(BlockId::new(3, 119)),
            },
            VoterProgress {
                id: 3,
                matched: None,
            },
        ];
        let doc = render_status(1, &status(Role::Leader), &progress, &image());
        // The digest is the image's own; the rest of the document is checked literally.
        let digest = format!(", digest {:016x}", image().digest());
        assert!(doc.contains(&digest), "{doc}");
        let doc = doc.replace(&digest, "");
        let expected = "\
chain (as node 1 sees it)
  leader 1, term 3, this node Leader
  head 3.120, commit 3.118, blocks collected 4
  voter progress:
  voter  matched  blocks behind
  1      3.120    0              leader
  2      3.119    1
  3      -        -

metadata image at position 118, cluster id c-1

brokers (2)
  id  endpoint        rack  epoch  fenced  shutting down
  1   127.0.0.1:9192  r1    10     no      no
  2   127.0.0.1:9292  -     20     yes     no

partitions (2 in 1 topics)
  topic   partition  leader  leader epoch  isr  replicas
  orders  0          1       3             [1]  [1]
  orders  1          none    0             [2]  [2]
";
        assert_eq!(doc, expected, "\n{doc}");
    }

    #[test]
    fn a_follower_points_at_the_leader_for_progress() {
        let doc = render_status(2, &status(Role::Follower), &[], &Image::default());
        assert!(
            doc.contains("known by the leader only (ask node 1)"),
            "{doc}"
        );
        assert!(doc.contains("brokers (0)"), "{doc}");
    }
}
