//! The `meta_commands` target: metadata commands, image snapshots, the image's validate/apply,
//! command log replay.

use std::fs;
use std::path::Path;

/// Decodes metadata commands and applies them to an image, then replays them from a command
/// log file. Byte 0 bit 0: recompute each command's CRC (so damage reaches the body decoder);
/// bit 1: the same for chunks that are image snapshots (start with `JMIS`). The rest is chunks
/// of `len u16 | command or snapshot bytes`; when the first chunk is a snapshot the other chunks
/// apply to its image (and alone go to the command log), else all apply to an empty image. Invariants: no panic; a decoded command
/// re-encodes to a value that decodes back equal; a decoded snapshot re-encodes to the same
/// bytes and keeps every image invariant; `apply` succeeds exactly when `validate` does and
/// never breaks an invariant; the final image's snapshot round-trips; the command log replays
/// exactly the leading decodable commands and truncates the rest.
pub fn meta_commands(dir: &Path, data: &[u8]) -> bool {
    use josefine_meta::{Command, CommandLog, Image};
    let Some((&flags, mut rest)) = data.split_first() else {
        return false;
    };
    let mut chunks = Vec::new();
    while rest.len() >= 2 && chunks.len() < 64 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let mut c = rest[2..2 + len].to_vec();
        if c.starts_with(b"JMIS") {
            if flags & 2 != 0 && c.len() >= 9 {
                let crc = crc32c::crc32c(&c[9..]);
                c[5..9].copy_from_slice(&crc.to_be_bytes());
            }
        } else if flags & 1 != 0 && c.len() >= 5 {
            let crc = crc32c::crc32c(&c[5..]);
            c[1..5].copy_from_slice(&crc.to_be_bytes());
        }
        chunks.push(c);
        rest = &rest[2 + len..];
    }
    let mut image = Image::default();
    let mut first_command = 0;
    for (i, c) in chunks.iter().enumerate() {
        if let Ok(snapshot) = Image::decode_snapshot(c) {
            assert_eq!(&snapshot.encode_snapshot(), c, "snapshots are canonical");
            if let Err(e) = snapshot.check_consistency() {
                panic!("a decoded snapshot breaks an invariant: {e}");
            }
            if i == 0 {
                image = snapshot;
                first_command = 1;
            }
        }
    }
    let mut leading = Vec::new();
    let chunks = &chunks[first_command..];
    let mut all_decoded = true;
    for c in chunks {
        match Command::decode(c) {
            Ok(cmd) => {
                let again = Command::decode(&cmd.encode()).expect("a re-encoded command decodes");
                assert_eq!(again, cmd, "command round trip");
                let valid = image.validate(&cmd).is_ok();
                let applied = image.apply(&cmd);
                assert_eq!(
                    valid,
                    applied.is_ok(),
                    "apply agrees with validate: {cmd:?}"
                );
                if let Err(e) = image.check_consistency() {
                    panic!("{cmd:?} broke an image invariant: {e}");
                }
                if all_decoded {
                    leading.push(cmd);
                }
            }
            Err(_) => all_decoded = false,
        }
    }
    let snapshot = image.encode_snapshot();
    let back = Image::decode_snapshot(&snapshot).expect("the image's own snapshot decodes");
    assert_eq!(back, image, "snapshot round trip");
    assert_eq!(back.digest(), image.digest());
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("scratch directory");
    let path = dir.join("commands");
    let mut file = Vec::new();
    for c in chunks {
        file.extend_from_slice(&(c.len() as u32).to_be_bytes());
        file.extend_from_slice(c);
    }
    fs::write(&path, &file).expect("scratch write");
    let (log, replay) = CommandLog::open(&path).expect("opening a damaged command log");
    assert_eq!(
        replay.commands, leading,
        "replay keeps exactly the leading valid commands"
    );
    assert_eq!(log.entries(), leading.len() as u64);
    let kept = file.len() as u64 - replay.truncated_bytes;
    assert_eq!(fs::metadata(&path).expect("command log").len(), kept);
    all_decoded && !chunks.is_empty()
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    use josefine_meta::{Command, Image, PartitionAssignment, TopicId};
    let topic_id = TopicId([9; 16]);
    let commands = vec![
        Command::InitCluster {
            cluster_id: "c-1".into(),
        },
        Command::RegisterBroker {
            node_id: 1,
            incarnation_id: 7,
            host: "localhost".into(),
            port: 9092,
            rack: Some("r1".into()),
        },
        Command::UnfenceBroker {
            node_id: 1,
            epoch: 0,
        },
        Command::CreateTopic {
            topic_id,
            name: "orders".into(),
            partitions: (0..3)
                .map(|p| PartitionAssignment::led_by_first(p, vec![1]))
                .collect(),
            configs: vec![("retention.ms".into(), "60000".into())],
        },
        Command::AllocateProducerIds {
            broker_id: 1,
            first_id: 0,
            count: 1000,
        },
        Command::AlterTopicConfigs {
            topic_id,
            replace_all: false,
            set: vec![("cleanup.policy".into(), "compact,delete".into())],
            delete: vec!["retention.ms".into()],
        },
        Command::AlterBrokerConfigs {
            broker_id: Some(1),
            replace_all: true,
            set: vec![("log.retention.ms".into(), "1000".into())],
            delete: vec![],
        },
        Command::AlterBrokerConfigs {
            broker_id: None,
            replace_all: false,
            set: vec![],
            delete: vec!["log.retention.ms".into()],
        },
        Command::CreatePartitions {
            topic_id,
            new_assignments: vec![PartitionAssignment::led_by_first(3, vec![1])],
        },
        Command::ChangePartition {
            topic_id,
            partition: 0,
            expected_partition_epoch: 0,
            leader: Some(-1),
            isr: None,
        },
        Command::BeginControlledShutdown {
            node_id: 1,
            epoch: 0,
        },
        Command::Batch(vec![
            Command::FenceBroker {
                node_id: 1,
                epoch: 0,
            },
            Command::ChangePartition {
                topic_id,
                partition: 1,
                expected_partition_epoch: 0,
                leader: Some(-1),
                isr: Some(vec![1]),
            },
        ]),
        Command::DeleteTopic { topic_id },
    ];
    // Flag 1 (recompute CRCs) on all but the first: mutations then reach the body decoder.
    let mut all = vec![1u8];
    let mut out = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let e = cmd.encode();
        let mut one = vec![u8::from(i > 0)];
        for input in [&mut one, &mut all] {
            input.extend_from_slice(&(e.len() as u16).to_be_bytes());
            input.extend_from_slice(&e);
        }
        out.push(one);
    }
    out.push(all);
    // Flags 3: a snapshot of the image the commands build (minus the deletion), then commands
    // against it (most refused there, which is the point: refusals against a full image).
    let mut image = Image::default();
    for cmd in &commands[..commands.len() - 1] {
        let _ = image.apply(cmd);
    }
    let snapshot = image.encode_snapshot();
    let mut with_snapshot = vec![3u8];
    with_snapshot.extend_from_slice(&(snapshot.len() as u16).to_be_bytes());
    with_snapshot.extend_from_slice(&snapshot);
    for cmd in &commands[4..] {
        let e = cmd.encode();
        with_snapshot.extend_from_slice(&(e.len() as u16).to_be_bytes());
        with_snapshot.extend_from_slice(&e);
    }
    out.push(with_snapshot);
    out
}
