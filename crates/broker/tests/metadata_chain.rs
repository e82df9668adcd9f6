//! The chain-backed metadata store, in process: proposals answered only once applied here,
//! restart replay, the block-size boundary (B7), not-controller answers, stray logs instead of
//! deletions at start-up (B1), and the one-time import of a legacy `metadata.log`.

use std::path::Path;
use std::time::Duration;

use josefine::config::{Config, ServeArgs};
use josefine::metadata::import::{IMPORTED_LOG, LEGACY_LOG};
use josefine::metadata::store::encode_fitting;
use josefine::metadata::{MetadataStore, StoreSettings};
use josefine::partitions::PartitionRegistry;
use josefine::server::RunningBroker;
use josefine_chain::limits::PAYLOAD_BYTES_MAX;
use josefine_meta::{Applied, Command, CommandLog, MetaError, PartitionAssignment, TopicId};

fn config(dir: &Path) -> Config {
    Config::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        raft_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_path_buf()),
        ..ServeArgs::default()
    })
    .unwrap()
}

/// Starts a broker on `dir`, retrying while the previous one's last handles release the
/// data directory lock.
async fn start(dir: &Path) -> RunningBroker {
    let mut attempt = 0;
    loop {
        match josefine::server::start(config(dir)).await {
            Ok(b) => return b,
            Err(_) if attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("start failed: {e:#}"),
        }
    }
}

/// Topics without their epochs: a restart on another port is a new registration, which moves
/// leaderships away and back (each a leader-epoch bump).
/// A topic without its epochs: id, name, (partition, replicas, leader), configs.
type TopicShape = (
    TopicId,
    String,
    Vec<(i32, Vec<i32>, i32)>,
    Vec<(String, String)>,
);

fn shape(topics: &std::collections::BTreeMap<TopicId, josefine_meta::Topic>) -> Vec<TopicShape> {
    topics
        .values()
        .map(|t| {
            (
                t.topic_id,
                t.name.clone(),
                t.partitions
                    .iter()
                    .map(|p| (p.partition, p.replicas.clone(), p.leader))
                    .collect(),
                t.configs.clone().into_iter().collect(),
            )
        })
        .collect()
}

fn create_topic(name: &str, id: u8, partitions: i32) -> Command {
    Command::CreateTopic {
        topic_id: TopicId([id; 16]),
        name: name.into(),
        partitions: (0..partitions)
            .map(|p| PartitionAssignment::led_by_first(p, vec![1]))
            .collect(),
        configs: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_answered_once_applied_here_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let store = &running.broker.metadata;
    assert!(store.is_leader() && store.is_sole_voter());
    let before = store.position();
    let applied = store.propose(create_topic("orders", 7, 3)).await.unwrap();
    assert!(
        matches!(applied, Applied::TopicCreated { .. }),
        "{applied:?}"
    );
    // Answered only once this broker's image holds it, and its logs are open.
    let image = store.image();
    assert!(image.position > before);
    assert_eq!(image.topic_by_name("orders").unwrap().partitions.len(), 3);
    assert!(running.broker.partitions.get(TopicId([7; 16]), 2).is_some());
    // A refused command is a no-op with the image's error.
    let again = store.propose(create_topic("orders", 8, 1)).await;
    assert!(
        matches!(again, Err(MetaError::TopicAlreadyExists(_))),
        "{again:?}"
    );
    let cluster_id = image.cluster_id.clone().unwrap();
    let topics = shape(&image.topics);
    let position = image.position;
    running.shutdown().await;

    let running = start(dir.path()).await;
    let image = running.broker.metadata.image();
    assert_eq!(image.cluster_id.as_deref(), Some(cluster_id.as_str()));
    assert_eq!(shape(&image.topics), topics);
    assert!(
        image.position > position,
        "a restart appends its own first block"
    );
    assert!(running.broker.partitions.get(TopicId([7; 16]), 0).is_some());
    running.shutdown().await;
}

#[test]
fn a_change_must_fit_one_block_and_the_refusal_names_the_limit() {
    // A creation whose encoding is exactly the block payload limit fits; one byte more does not.
    let sized = |value_len: usize| Command::CreateTopic {
        topic_id: TopicId([1; 16]),
        name: "big".into(),
        partitions: vec![PartitionAssignment::led_by_first(0, vec![1])],
        configs: vec![("x".into(), "v".repeat(value_len))],
    };
    let overhead = sized(0).encode().len();
    let exact = sized(PAYLOAD_BYTES_MAX - overhead);
    assert_eq!(exact.encode().len(), PAYLOAD_BYTES_MAX);
    assert!(encode_fitting(&exact).is_ok());
    let over = sized(PAYLOAD_BYTES_MAX - overhead + 1);
    match encode_fitting(&over) {
        Err(e @ MetaError::InvalidPartitions(_)) => {
            assert_eq!(e.kafka_error_code(), 37, "INVALID_PARTITIONS");
            let msg = e.to_string();
            assert!(msg.contains(&PAYLOAD_BYTES_MAX.to_string()), "{msg}");
            assert!(msg.contains(&(PAYLOAD_BYTES_MAX + 1).to_string()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_creation_is_refused_before_it_reaches_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let store = &running.broker.metadata;
    let position = store.position();
    let huge = Command::CreateTopic {
        topic_id: TopicId([3; 16]),
        name: "huge".into(),
        partitions: vec![PartitionAssignment::led_by_first(0, vec![1])],
        configs: vec![("x".into(), "v".repeat(PAYLOAD_BYTES_MAX))],
    };
    let r = store.propose(huge).await;
    assert!(matches!(r, Err(MetaError::InvalidPartitions(_))), "{r:?}");
    assert_eq!(store.position(), position, "nothing was proposed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_without_quorum_answers_not_controller() {
    let dir = tempfile::tempdir().unwrap();
    let partitions = std::sync::Arc::new(
        PartitionRegistry::open(dir.path(), 1, config(dir.path()).broker).unwrap(),
    );
    // Two voters, the other never started: no leader can be elected.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = StoreSettings {
        node_id: 1,
        voters: vec![
            (1, "127.0.0.1:0".parse().unwrap()),
            (2, unused.local_addr().unwrap()),
        ],
        raft_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        snapshot_every_blocks: 1000,
        snapshot_every_bytes: 1 << 20,
        non_chain: None,
        raft_tls: None,
    };
    let store = MetadataStore::open(settings, partitions).await.unwrap();
    assert!(!store.is_leader() && !store.is_sole_voter());
    let r = store
        .propose(Command::InitCluster {
            cluster_id: "c".into(),
        })
        .await;
    match r {
        Err(e @ MetaError::NotController { leader: None }) => {
            assert_eq!(e.kafka_error_code(), 41, "NOT_CONTROLLER")
        }
        other => panic!("{other:?}"),
    }
    let waited = store
        .wait_for_position(1, tokio::time::Instant::now() + Duration::from_millis(50))
        .await;
    match waited {
        Err(e @ MetaError::TimedOut(_)) => assert_eq!(e.kafka_error_code(), 7),
        other => panic!("{other:?}"),
    }
    store.shutdown().await;
}

fn partition_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('-') && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_the_image_does_not_name_is_kept_as_a_stray_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    running
        .broker
        .metadata
        .propose(create_topic("kept", 1, 1))
        .await
        .unwrap();
    running.shutdown().await;
    // A log directory the metadata never named (say, restored by hand from elsewhere).
    copy_dir(&dir.path().join("kept-0"), &dir.path().join("ghost-0"));
    let running = start(dir.path()).await;
    let dirs = partition_dirs(dir.path());
    assert!(dirs.contains(&"kept-0".to_string()), "{dirs:?}");
    let stray = dirs
        .iter()
        .find(|d| d.starts_with("ghost-0.") && d.ends_with("-stray"))
        .unwrap_or_else(|| panic!("no stray in {dirs:?}"));
    assert!(dir.path().join(stray).join("partition.metadata").exists());
    assert!(running.broker.partitions.get(TopicId([1; 16]), 0).is_some());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_dirs_without_a_chain_are_kept() {
    // A data directory whose chain is gone (or never existed) but whose logs are there.
    let old = tempfile::tempdir().unwrap();
    let running = start(old.path()).await;
    running
        .broker
        .metadata
        .propose(create_topic("precious", 2, 2))
        .await
        .unwrap();
    running.shutdown().await;
    let fresh = tempfile::tempdir().unwrap();
    for p in ["precious-0", "precious-1"] {
        copy_dir(&old.path().join(p), &fresh.path().join(p));
    }
    let running = start(fresh.path()).await;
    assert!(running.broker.metadata.image().topics.is_empty());
    let dirs = partition_dirs(fresh.path());
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for d in &dirs {
        assert!(d.starts_with("precious-") && d.ends_with("-stray"), "{d}");
        assert!(fresh.path().join(d).join("partition.metadata").exists());
    }
    running.shutdown().await;
}

/// What a data directory of the single-node binary before the chain holds: its commands in
/// `metadata.log` (registrations without incarnation ids, as the old encoding decodes).
fn legacy_commands() -> Vec<Command> {
    vec![
        Command::InitCluster {
            cluster_id: "legacy-cluster".into(),
        },
        Command::RegisterBroker {
            node_id: 1,
            incarnation_id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        },
        create_topic("a", 1, 2),
        Command::AlterTopicConfigs {
            topic_id: TopicId([1; 16]),
            replace_all: false,
            set: vec![("retention.ms".into(), "1234".into())],
            delete: vec![],
        },
        Command::AllocateProducerIds {
            broker_id: 1,
            first_id: 0,
            count: 1000,
        },
        create_topic("b", 2, 1),
        Command::DeleteTopic {
            topic_id: TopicId([2; 16]),
        },
        // The broker restarted on another port: a second registration, same node.
        Command::RegisterBroker {
            node_id: 1,
            incarnation_id: 0,
            host: "127.0.0.1".into(),
            port: 9094,
            rack: None,
        },
        create_topic("c", 3, 1),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_metadata_log_is_imported_once_and_an_interrupted_import_resumes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = CommandLog::open(&dir.path().join(LEGACY_LOG)).unwrap();
        for c in legacy_commands() {
            log.append(&c).unwrap();
        }
    }
    let running = start(dir.path()).await;
    let image = running.broker.metadata.image();
    assert_eq!(image.cluster_id.as_deref(), Some("legacy-cluster"));
    let names: Vec<&str> = image.topic_ids_by_name.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "c"]);
    let a = image.topic_by_name("a").unwrap();
    assert_eq!(
        a.configs.get("retention.ms").map(String::as_str),
        Some("1234")
    );
    assert!(a.partitions.iter().all(|p| p.leader == 1 && p.isr == [1]));
    assert_eq!(image.next_producer_id, 1000);
    let me = &image.brokers[&1];
    assert!(!me.fenced, "the broker serves after the import");
    assert!(running.broker.partitions.get(TopicId([1; 16]), 1).is_some());
    assert!(!dir.path().join(LEGACY_LOG).exists());
    assert!(dir.path().join(IMPORTED_LOG).exists());
    let (topics, next_producer_id) = (shape(&image.topics), image.next_producer_id);
    running.shutdown().await;

    // A crash just before the rename: the log is back and the progress file says all but the
    // last command were imported. The repeat of that command is refused; nothing changes.
    std::fs::copy(dir.path().join(IMPORTED_LOG), dir.path().join(LEGACY_LOG)).unwrap();
    let done = (legacy_commands().len() - 1) as u64;
    std::fs::write(
        dir.path().join("metadata.log.import-progress"),
        done.to_be_bytes(),
    )
    .unwrap();
    let running = start(dir.path()).await;
    let image = running.broker.metadata.image();
    assert_eq!(shape(&image.topics), topics);
    assert_eq!(image.next_producer_id, next_producer_id);
    assert!(!dir.path().join(LEGACY_LOG).exists());
    assert!(!dir.path().join("metadata.log.import-progress").exists());
    running.shutdown().await;

    // A legacy log beside a chain that never imported it: two histories, refused.
    std::fs::copy(dir.path().join(IMPORTED_LOG), dir.path().join(LEGACY_LOG)).unwrap();
    let err = josefine::server::start(config(dir.path()))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("refusing to merge"), "{err:#}");
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(josefine::metadata::store::CHAIN_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect()
}

async fn open_store(dir: &Path, every_blocks: u64) -> MetadataStore {
    let partitions =
        std::sync::Arc::new(PartitionRegistry::open(dir, 1, config(dir).broker).unwrap());
    let settings = StoreSettings {
        snapshot_every_blocks: every_blocks,
        ..StoreSettings::from_config(&config(dir))
    };
    let store = MetadataStore::open(settings, partitions).await.unwrap();
    store.wait_caught_up().await.unwrap();
    store.go_live(true).await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_compaction_recovers_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 5).await;
    josefine::metadata::bootstrap::bootstrap_single_node(
        &store,
        || "compacted".into(),
        &josefine::metadata::bootstrap::Endpoint {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        },
    )
    .await
    .unwrap();
    for i in 0..12u8 {
        store
            .propose(create_topic(&format!("t{i}"), 10 + i, 1))
            .await
            .unwrap();
    }
    // The compaction task runs behind the applier; wait for its snapshot file.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while snapshot_files(dir.path()).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = store.image();
    store.shutdown().await;

    let store = open_store(dir.path(), 5).await;
    let after = store.image();
    assert!(after.position > before.position, "a new term's first block");
    let mut same_position = (*after).clone();
    same_position.position = before.position;
    assert_eq!(same_position.digest(), before.digest());
    assert_eq!(after.topics.len(), 12);
    store.shutdown().await;
}
