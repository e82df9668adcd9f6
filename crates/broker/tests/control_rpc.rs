//! The raft address over real sockets: connection prefaces, and (below) controller RPCs and the
//! status document. Every hostile case must close that connection only; the listener keeps
//! serving new ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use josefine::control::frame::{self, control_versions, CONTROL_APIS};
use josefine::control::{
    BoxFuture, ControlAnswer, ControlClient, ControlHandler, ControlServer, RpcError,
};
use josefine::raft::limits::CONTROL_REQUEST_BYTES_MAX;
use josefine::raft::transport::{self, Preface, RaftConnection};
use josefine::raft::ChainStatus;
use josefine_chain::{BlockId, Envelope, Message, Role};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A raft listener for node 1 without a chain core: what arrives on chain connections goes to
/// the returned receiver, non-chain connections to the other one.
async fn raft_listener() -> (
    SocketAddr,
    mpsc::Receiver<Envelope>,
    mpsc::Receiver<RaftConnection>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (inbound_tx, inbound_rx) = mpsc::channel(16);
    let (conn_tx, conn_rx) = transport::non_chain_channel();
    tokio::spawn(transport::serve(
        listener,
        1,
        inbound_tx,
        Some(conn_tx),
        None,
    ));
    (addr, inbound_rx, conn_rx)
}

/// True when the server closes the connection (EOF or reset) within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn heartbeat(to: u64) -> Envelope {
    Envelope {
        from: 2,
        to,
        message: Message::TimeoutNow { term: 3, leader: 2 },
    }
}

#[tokio::test]
async fn chain_preface_then_frames_reach_the_core() {
    let (addr, mut inbound, _conns) = raft_listener().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Chain.bytes()).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, heartbeat(1));
}

#[tokio::test]
async fn frames_without_the_chain_preface_are_closed_unread() {
    let (addr, mut inbound, _conns) = raft_listener().await;
    // Today's frame without a preface: its first 8 bytes are not a preface.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    assert!(closed_by_server(&mut s).await);
    for bad in [
        &b"JCHAIN02"[..],
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bad).await.unwrap();
        assert!(closed_by_server(&mut s).await, "{bad:?} left open");
    }
    // A preface that never completes is closed after PREFACE_TIMEOUT_MS.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"JCH").await.unwrap();
    assert!(closed_by_server(&mut s).await);
    assert!(inbound.try_recv().is_err(), "nothing reached the core");
    // Still serving.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Chain.bytes()).await.unwrap();
    s.write_all(&josefine_chain::codec::encode(&heartbeat(1)))
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), inbound.recv())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn control_and_status_connections_are_handed_over_with_their_preface() {
    let (addr, _inbound, mut conns) = raft_listener().await;
    for p in [Preface::Control, Preface::Status] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(p.bytes()).await.unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), conns.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.preface, p);
    }
}

#[tokio::test]
async fn control_preface_without_a_control_server_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (inbound_tx, _inbound_rx) = mpsc::channel(16);
    tokio::spawn(transport::serve(listener, 1, inbound_tx, None, None));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Control.bytes()).await.unwrap();
    assert!(closed_by_server(&mut s).await);
}

// ---------------------------------------------------------------------------------------------
// Controller RPCs.

const NOT_CONTROLLER: i16 = 41;

/// Answers every control API from the request's own fields, so a round trip proves both
/// directions: the position is 1000 + the broker id or name length, and every item error is 0
/// or NOT_CONTROLLER.
struct TestHandler {
    controller: AtomicBool,
    calls: AtomicUsize,
    /// CreateTopics waits this long before answering (to show others are not held up).
    create_delay: Duration,
    /// The connection of every request, in arrival order.
    connections: std::sync::Mutex<Vec<u64>>,
    /// The connections reported closed by their peer.
    closed: std::sync::Mutex<Vec<u64>>,
}

impl TestHandler {
    fn new(controller: bool) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            controller: AtomicBool::new(controller),
            calls: AtomicUsize::new(0),
            create_delay: Duration::ZERO,
            connections: Default::default(),
            closed: Default::default(),
        })
    }
}

fn name(v: &str) -> TopicName {
    TopicName(StrBytes::from_string(v.to_owned()))
}

fn answer(request: RequestKind, error: i16) -> ControlAnswer {
    let (response, position): (ResponseKind, u64) = match request {
        RequestKind::BrokerRegistration(r) => (
            BrokerRegistrationResponse::default()
                .with_error_code(error)
                .with_broker_epoch(r.broker_id.0 as i64 * 10)
                .into(),
            1000 + r.broker_id.0 as u64,
        ),
        RequestKind::BrokerHeartbeat(r) => (
            BrokerHeartbeatResponse::default()
                .with_error_code(error)
                .with_is_fenced(r.want_fence)
                .with_should_shut_down(r.want_shut_down)
                .into(),
            1000 + r.broker_id.0 as u64,
        ),
        RequestKind::AllocateProducerIds(r) => (
            AllocateProducerIdsResponse::default()
                .with_error_code(error)
                .with_producer_id_start(ProducerId(r.broker_id.0 as i64 * 1000))
                .with_producer_id_len(1000)
                .into(),
            1000 + r.broker_id.0 as u64,
        ),
        RequestKind::AlterPartition(r) => (
            AlterPartitionResponse::default()
                .with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            alter_partition_response::TopicData::default()
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            alter_partition_response::PartitionData::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(error)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
                .into(),
            1000 + r.broker_id.0 as u64,
        ),
        RequestKind::CreateTopics(r) => (
            CreateTopicsResponse::default()
                .with_topics(
                    r.topics
                        .iter()
                        .map(|t| {
                            create_topics_response::CreatableTopicResult::default()
                                .with_name(t.name.clone())
                                .with_error_code(error)
                                .with_num_partitions(t.num_partitions)
                        })
                        .collect(),
                )
                .into(),
            1000 + r.topics.len() as u64,
        ),
        RequestKind::DeleteTopics(r) => {
            let names: Vec<TopicName> = r
                .topic_names
                .iter()
                .cloned()
                .chain(r.topics.iter().filter_map(|t| t.name.clone()))
                .collect();
            (
                DeleteTopicsResponse::default()
                    .with_responses(
                        names
                            .iter()
                            .map(|n| {
                                delete_topics_response::DeletableTopicResult::default()
                                    .with_name(Some(n.clone()))
                                    .with_error_code(error)
                            })
                            .collect(),
                    )
                    .into(),
                1000 + names.len() as u64,
            )
        }
        RequestKind::CreateAcls(r) => (
            CreateAclsResponse::default()
                .with_results(
                    r.creations
                        .iter()
                        .map(|_| create_acls_response::AclCreationResult::default().with_error_code(error))
                        .collect(),
                )
                .into(),
            1000 + r.creations.len() as u64,
        ),
        RequestKind::DeleteAcls(r) => (
            DeleteAclsResponse::default()
                .with_filter_results(
                    r.filters
                        .iter()
                        .map(|_| delete_acls_response::DeleteAclsFilterResult::default().with_error_code(error))
                        .collect(),
                )
                .into(),
            1000 + r.filters.len() as u64,
        ),
        RequestKind::AlterUserScramCredentials(r) => (
            kafka_protocol::messages::AlterUserScramCredentialsResponse::default()
                .with_results(
                    r.upsertions
                        .iter()
                        .map(|u| {
                            kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(u.name.clone())
                                .with_error_code(error)
                        })
                        .collect(),
                )
                .into(),
            1000 + r.upsertions.len() as u64,
        ),
        RequestKind::CreatePartitions(r) => (
            CreatePartitionsResponse::default()
                .with_results(
                    r.topics
                        .iter()
                        .map(|t| {
                            create_partitions_response::CreatePartitionsTopicResult::default()
                                .with_name(t.name.clone())
                                .with_error_code(error)
                        })
                        .collect(),
                )
                .into(),
            1000 + r.topics.len() as u64,
        ),
        RequestKind::AlterConfigs(r) => (
            AlterConfigsResponse::default()
                .with_responses(
                    r.resources
                        .iter()
                        .map(|c| {
                            alter_configs_response::AlterConfigsResourceResponse::default()
                                .with_resource_type(c.resource_type)
                                .with_resource_name(c.resource_name.clone())
                                .with_error_code(error)
                        })
                        .collect(),
                )
                .into(),
            1000 + r.resources.len() as u64,
        ),
        RequestKind::IncrementalAlterConfigs(r) => (
            IncrementalAlterConfigsResponse::default()
                .with_responses(
                    r.resources
                        .iter()
                        .map(|c| {
                            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                                .with_resource_type(c.resource_type)
                                .with_resource_name(c.resource_name.clone())
                                .with_error_code(error)
                        })
                        .collect(),
                )
                .into(),
            1000 + r.resources.len() as u64,
        ),
        other => panic!("the server handed over a non-control request: {other:?}"),
    };
    ControlAnswer::Respond {
        response,
        metadata_position: position,
    }
}

impl ControlHandler for TestHandler {
    fn handle(
        &self,
        _peer: SocketAddr,
        connection: u64,
        header: RequestHeader,
        request: RequestKind,
    ) -> BoxFuture<'static, ControlAnswer> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.connections.lock().unwrap().push(connection);
        let error = if self.controller.load(Ordering::SeqCst) {
            0
        } else {
            NOT_CONTROLLER
        };
        let delay = self.create_delay;
        Box::pin(async move {
            match &request {
                RequestKind::CreateTopics(_) => tokio::time::sleep(delay).await,
                // Test hooks: broker 66 is refused (connection closed), broker 77 never answered.
                RequestKind::BrokerHeartbeat(r) if r.broker_id.0 == 66 => {
                    return ControlAnswer::Close
                }
                RequestKind::BrokerHeartbeat(r) if r.broker_id.0 == 77 => {
                    std::future::pending::<()>().await
                }
                _ => {}
            }
            assert!(header.client_id.is_some());
            answer(request, error)
        })
    }

    fn closed_by_peer(&self, _peer: SocketAddr, connection: u64) {
        self.closed.lock().unwrap().push(connection);
    }
}

/// A raft listener with a control server answering through `handler`; its status document is
/// `status`.
async fn control_server(handler: Arc<TestHandler>, status: &'static str) -> SocketAddr {
    let (addr, inbound, conns) = raft_listener().await;
    std::mem::forget(inbound); // keeps the chain side of the listener open
    let server = ControlServer::new(handler, Arc::new(move || status.to_string()));
    tokio::spawn(server.run(conns));
    addr
}

fn chain_led_by(leader: Option<u64>) -> (watch::Sender<ChainStatus>, watch::Receiver<ChainStatus>) {
    watch::channel(ChainStatus {
        role: Role::Follower,
        term: 1,
        leader,
        head: BlockId::new(1, 1),
        commit: BlockId::new(1, 1),
        collected_total: 0,
    })
}

/// A request of `api` with one item named after the version, valid at `v`.
fn request(api: ApiKey, v: i16) -> RequestKind {
    let n = format!("t{v}");
    match api {
        ApiKey::BrokerRegistration => BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(v as i32 + 2))
            .with_rack(Some(StrBytes::from_static_str("r1")))
            .into(),
        ApiKey::BrokerHeartbeat => BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(v as i32 + 2))
            .with_want_fence(true)
            .into(),
        ApiKey::AllocateProducerIds => AllocateProducerIdsRequest::default()
            .with_broker_id(BrokerId(v as i32 + 2))
            .into(),
        ApiKey::AlterPartition => AlterPartitionRequest::default()
            .with_broker_id(BrokerId(v as i32 + 2))
            .with_topics(vec![alter_partition_request::TopicData::default()
                .with_topic_id(uuid::Uuid::from_u128(v as u128))
                .with_partitions(vec![
                    alter_partition_request::PartitionData::default()
                        .with_partition_index(v as i32)
                        .with_new_isr_with_epochs(vec![
                            alter_partition_request::BrokerState::default()
                                .with_broker_id(BrokerId(2))
                                .with_broker_epoch(5),
                        ]),
                ])])
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name(&n))
                .with_num_partitions(3)
                .with_replication_factor(1)])
            .into(),
        ApiKey::DeleteTopics if v >= 6 => DeleteTopicsRequest::default()
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&n)))
            ])
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default()
            .with_topic_names(vec![name(&n)])
            .into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(&n))
                    .with_count(4),
            ])
            .into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default()
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(n))])
            .into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(n)),
            ])
            .into(),
        ApiKey::CreateAcls => CreateAclsRequest::default()
            .with_creations(vec![create_acls_request::AclCreation::default()
                .with_resource_name(StrBytes::from_string(n))])
            .into(),
        ApiKey::DeleteAcls => DeleteAclsRequest::default()
            .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_name_filter(Some(StrBytes::from_string(n)))])
            .into(),
        ApiKey::AlterUserScramCredentials => {
            kafka_protocol::messages::AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![
                    kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_string(n))
                        .with_mechanism(1)
                        .with_iterations(4096),
                ])
                .into()
        }
        other => panic!("{other:?} is not a control API"),
    }
}

fn client(
    voters: &[(u64, SocketAddr)],
    chain: watch::Receiver<ChainStatus>,
    timeout_ms: u64,
) -> ControlClient {
    ControlClient::new(
        "josefine-9",
        voters,
        chain,
        Duration::from_millis(timeout_ms),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_api_round_trips_at_its_lowest_and_highest_version() {
    let handler = TestHandler::new(true);
    let addr = control_server(handler.clone(), "").await;
    let (_tx, chain) = chain_led_by(Some(1));
    let c = client(&[(1, addr)], chain, 5_000);
    let mut calls = 0;
    for api in CONTROL_APIS {
        let (min, max) = control_versions(api).unwrap();
        for v in [min, max] {
            let req = request(api, v);
            let (resp, position) = c.call(1, v, req.clone()).await.unwrap();
            calls += 1;
            let ControlAnswer::Respond {
                response,
                metadata_position,
            } = answer(req, 0)
            else {
                unreachable!()
            };
            // What the handler built, as the wire carries it at this version.
            let sent = frame::encode_response(metadata_position, v, 0, &response).unwrap();
            let expected = frame::decode_response(sent.freeze().slice(4..), api, v).unwrap();
            assert_eq!(
                (resp, position),
                (expected.body, expected.metadata_position),
                "{api:?} v{v}"
            );
        }
    }
    // The same through call_controller.
    let (resp, _) = c
        .call_controller(
            0,
            request(ApiKey::AllocateProducerIds, 0),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(matches!(resp, ResponseKind::AllocateProducerIds(r) if r.producer_id_start.0 == 2000));
    assert_eq!(handler.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_admin_request_does_not_hold_up_heartbeats_on_the_same_connection() {
    let handler = Arc::new(TestHandler {
        controller: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
        create_delay: Duration::from_secs(3),
        connections: Default::default(),
        closed: Default::default(),
    });
    let addr = control_server(handler, "").await;
    let (_tx, chain) = chain_led_by(Some(1));
    let c = Arc::new(client(&[(1, addr)], chain, 10_000));
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.call(1, 7, request(ApiKey::CreateTopics, 7)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..5 {
        c.call(1, 1, request(ApiKey::BrokerHeartbeat, 1))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "heartbeats waited for CreateTopics"
    );
    assert!(slow.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_unknown_nodes_and_closed_connections_are_errors_and_the_next_call_works() {
    let handler = TestHandler::new(true);
    let addr = control_server(handler, "").await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap(); // closed
    let (_tx, chain) = chain_led_by(Some(1));
    let c = client(&[(1, addr), (2, dead)], chain, 500);
    let hb = |id: i32| -> RequestKind {
        BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(id))
            .into()
    };
    assert!(matches!(
        c.call(1, 1, hb(77)).await,
        Err(RpcError::TimedOut { node: 1, .. })
    ));
    assert!(
        c.call(1, 1, hb(5)).await.is_ok(),
        "a late answer does not confuse the next call"
    );
    assert!(matches!(
        c.call(1, 1, hb(66)).await,
        Err(RpcError::ConnectionLost { node: 1 })
    ));
    assert!(c.call(1, 1, hb(5)).await.is_ok(), "reconnected");
    assert!(matches!(
        c.call(2, 1, hb(5)).await,
        Err(RpcError::Connect { node: 2, .. })
    ));
    assert!(matches!(
        c.call(3, 1, hb(5)).await,
        Err(RpcError::UnknownNode(3))
    ));
    let metadata = RequestKind::Metadata(MetadataRequest::default());
    assert!(matches!(
        c.call(1, 4, metadata).await,
        Err(RpcError::BadRequest(_))
    ));
    assert!(matches!(
        c.call(1, 99, hb(5)).await,
        Err(RpcError::BadRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_controller_follows_the_leader_past_not_controller_dead_nodes_and_no_leader() {
    let old = TestHandler::new(false);
    let new = TestHandler::new(true);
    let old_addr = control_server(old.clone(), "").await;
    let new_addr = control_server(new.clone(), "").await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let voters = [(1, old_addr), (2, new_addr), (3, dead)];
    let deadline = || Instant::now() + Duration::from_secs(10);

    // The chain still names node 1, which answers NOT_CONTROLLER until the chain moves on.
    let (tx, chain) = chain_led_by(Some(1));
    let c = client(&voters, chain, 2_000);
    let mover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send_modify(|s| s.leader = None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send_modify(|s| s.leader = Some(3)); // dead: connection refused
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send_modify(|s| s.leader = Some(2));
        tx
    });
    for api in CONTROL_APIS {
        let v = control_versions(api).unwrap().1;
        let (resp, _) = c
            .call_controller(v, request(api, v), deadline())
            .await
            .unwrap();
        assert!(
            !josefine::control::not_controller(&resp),
            "{api:?}: {resp:?}"
        );
    }
    assert!(
        old.calls.load(Ordering::SeqCst) >= 1,
        "node 1 was asked first"
    );
    assert_eq!(new.calls.load(Ordering::SeqCst), CONTROL_APIS.len());
    let tx = mover.await.unwrap();

    // Nobody is controller before the deadline: NoController, after the deadline, not before.
    tx.send_modify(|s| s.leader = Some(1));
    let started = Instant::now();
    let r = c
        .call_controller(
            1,
            request(ApiKey::BrokerHeartbeat, 1),
            Instant::now() + Duration::from_millis(700),
        )
        .await;
    assert!(matches!(r, Err(RpcError::NoController { .. })), "{r:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A custom retry test: retry nothing, so NOT_CONTROLLER comes back as an answer.
    let (resp, _) = c
        .call_controller_retrying(1, request(ApiKey::BrokerHeartbeat, 1), deadline(), |_| {
            false
        })
        .await
        .unwrap();
    assert!(matches!(resp, ResponseKind::BrokerHeartbeat(r) if r.error_code == NOT_CONTROLLER));
}

#[test]
fn not_controller_needs_every_item_to_say_so() {
    let topic = |e: i16| create_topics_response::CreatableTopicResult::default().with_error_code(e);
    let ct = |codes: &[i16]| -> ResponseKind {
        CreateTopicsResponse::default()
            .with_topics(codes.iter().map(|&e| topic(e)).collect())
            .into()
    };
    assert!(josefine::control::not_controller(&ct(&[41, 41])));
    assert!(
        !josefine::control::not_controller(&ct(&[41, 0])),
        "partly served"
    );
    assert!(!josefine::control::not_controller(&ct(&[])));
    let hb: ResponseKind = BrokerHeartbeatResponse::default()
        .with_error_code(41)
        .into();
    assert!(josefine::control::not_controller(&hb));
    let hb: ResponseKind = BrokerHeartbeatResponse::default().with_error_code(7).into();
    assert!(!josefine::control::not_controller(&hb));
    // AlterPartition: top level, or every partition (the controller's image is behind).
    let ap = |top: i16, codes: &[i16]| -> ResponseKind {
        AlterPartitionResponse::default()
            .with_error_code(top)
            .with_topics(vec![alter_partition_response::TopicData::default()
                .with_partitions(
                    codes
                        .iter()
                        .map(|&e| {
                            alter_partition_response::PartitionData::default().with_error_code(e)
                        })
                        .collect(),
                )])
            .into()
    };
    assert!(josefine::control::not_controller(&ap(41, &[])));
    assert!(josefine::control::not_controller(&ap(0, &[41, 41])));
    assert!(!josefine::control::not_controller(&ap(0, &[41, 95])));
    assert!(!josefine::control::not_controller(&ap(0, &[])));
}

/// Opens a JCTRL001 connection and writes `bytes` after the preface.
async fn control_conn(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Control.bytes()).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

fn raw_frame(api: ApiKey, v: i16, body: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(v)
        .with_correlation_id(1)
        .encode(&mut f, api.request_header_version(v))
        .unwrap();
    f.put_slice(body);
    let len = (f.len() - 4) as i32;
    f[..4].copy_from_slice(&len.to_be_bytes());
    f.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_oversized_and_client_api_frames_close_only_their_connection() {
    let handler = TestHandler::new(true);
    let addr = control_server(handler.clone(), "").await;
    let (_tx, chain) = chain_led_by(Some(1));
    let c = client(&[(1, addr)], chain, 5_000);
    let mut metadata = BytesMut::new();
    MetadataRequest::default().encode(&mut metadata, 4).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        ("2 GiB declared", i32::MAX.to_be_bytes().to_vec()),
        (
            "one byte over the cap",
            ((CONTROL_REQUEST_BYTES_MAX + 1) as i32)
                .to_be_bytes()
                .to_vec(),
        ),
        (
            "garbage",
            vec![0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        ("too short for a header", vec![0, 0, 0, 2, 0, 62]),
        (
            "Metadata (a client API)",
            raw_frame(ApiKey::Metadata, 4, &metadata),
        ),
        (
            "Produce (a client API)",
            raw_frame(ApiKey::Produce, 9, &[0; 16]),
        ),
        (
            "ApiVersions (a client API)",
            raw_frame(ApiKey::ApiVersions, 3, &[0; 3]),
        ),
        (
            "BrokerHeartbeat v99",
            raw_frame(ApiKey::BrokerHeartbeat, 99, &[]),
        ),
        (
            "CreateTopics v1 (below the client listener's range)",
            raw_frame(ApiKey::CreateTopics, 1, &[0; 8]),
        ),
        (
            "BrokerRegistration with a 2^32-2 element count",
            raw_frame(
                ApiKey::BrokerRegistration,
                4,
                &[0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x0f],
            ),
        ),
        (
            "AllocateProducerIds body cut short",
            raw_frame(ApiKey::AllocateProducerIds, 0, &[0, 0]),
        ),
    ];
    let rss_before = josefine::alloc_guard::resident_bytes().unwrap();
    for (what, bytes) in &cases {
        let mut s = control_conn(addr, bytes).await;
        assert!(closed_by_server(&mut s).await, "{what}: left open");
    }
    // Truncated: a frame promising 100 bytes, 8 sent, then the write side closed.
    let mut s = control_conn(addr, &[0, 0, 0, 100, 0, 63, 0, 1, 0, 0, 0, 1]).await;
    s.shutdown().await.unwrap();
    assert!(closed_by_server(&mut s).await, "truncated frame left open");
    // Many connections declaring the largest frame and sending little: nothing is sized by the
    // declared length, so resident memory does not grow by connections x 1 MiB.
    let mut held = Vec::new();
    for _ in 0..24 {
        let mut f = (CONTROL_REQUEST_BYTES_MAX as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 62, 0, 4]);
        f.extend_from_slice(&[0; 1024]);
        held.push(control_conn(addr, &f).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = josefine::alloc_guard::resident_bytes().unwrap();
    assert!(
        rss_after < rss_before + (16 << 20),
        "RSS {rss_before} -> {rss_after}"
    );
    drop(held);
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        0,
        "nothing reached the handler"
    );
    // Still serving.
    assert!(c
        .call(1, 1, request(ApiKey::BrokerHeartbeat, 1))
        .await
        .is_ok());
}

/// Josefine's session-close rule rests on this: a connection the peer ends (EOF, as when its
/// process is killed) is reported once with the id its requests came with; one this side
/// closes (a refused request) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_peer_closes_is_reported_one_this_side_closes_is_not() {
    let handler = TestHandler::new(true);
    let addr = control_server(handler.clone(), "").await;
    let hb = |id: i32| -> RequestKind {
        BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(id))
            .into()
    };
    let wait_closed = |n: usize| {
        let handler = handler.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while handler.closed.lock().unwrap().len() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            handler.closed.lock().unwrap().clone()
        }
    };
    // Refused by the handler: this side closes; the client reconnects for the next call.
    let (_tx, chain) = chain_led_by(Some(1));
    let c = client(&[(1, addr)], chain, 5_000);
    assert!(c.call(1, 1, hb(66)).await.is_err());
    assert!(c.call(1, 1, hb(5)).await.is_ok());
    assert!(c.call(1, 1, hb(5)).await.is_ok());
    let seen = handler.connections.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_ne!(seen[0], seen[1], "a new connection after the refusal");
    assert_eq!(seen[1], seen[2], "calls share the connection");
    // The client goes away (its process dies): its connection is reported, the refused one
    // never is.
    drop(c);
    assert_eq!(wait_closed(1).await, vec![seen[1]]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handler.closed.lock().unwrap().len(), 1);
    // A bad frame is this side's close too.
    let mut s = control_conn(addr, &(-1i32).to_be_bytes()).await;
    assert!(closed_by_server(&mut s).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handler.closed.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_connection_gets_the_document_then_eof() {
    let addr = control_server(TestHandler::new(true), "chain leader: 1\nbrokers: 3\n").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Preface::Status.bytes()).await.unwrap();
    let mut doc = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut doc))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc, "chain leader: 1\nbrokers: 3\n");
}

/// The response frame layout on the wire: length, position, header, body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_frames_carry_the_position_before_the_kafka_response() {
    let addr = control_server(TestHandler::new(true), "").await;
    let req = request(ApiKey::BrokerRegistration, 0);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::BrokerRegistration as i16)
        .with_request_api_version(0)
        .with_correlation_id(12345);
    let f = frame::encode_request(&header, &req).unwrap();
    let mut s = control_conn(addr, &f).await;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(
        &body[..8],
        &1002i64.to_be_bytes(),
        "position (1000 + broker id 2)"
    );
    assert_eq!(&body[8..12], &12345i32.to_be_bytes(), "correlation id");
    let r = frame::decode_response(body.into(), ApiKey::BrokerRegistration, 0).unwrap();
    assert!(matches!(r.body, ResponseKind::BrokerRegistration(b) if b.broker_epoch == 20));
}

/// `josefine cluster-status --raft ADDR`: the document on stdout and exit 0; an unreachable
/// address or a port that is not a raft address: one line on stderr and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_prints_the_document_or_one_line_and_exit_1() {
    let addr = control_server(TestHandler::new(true), "chain (as node 1 sees it)\n").await;
    let run = |raft: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_josefine"))
                .args(["cluster-status", "--raft", &raft])
                .output()
                .unwrap()
        })
    };
    let out = run(addr.to_string()).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "chain (as node 1 sees it)\n"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(closed.to_string()).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("josefine cluster-status: cannot reach"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // A listener that closes at once (not a raft address).
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = other.accept().await {
            drop(s);
        }
    });
    let out = run(other_addr.to_string()).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a status document"), "{err}");
}

/// The whole path on a real one-voter chain: its raft listener hands the status connection to
/// the control server, whose document renders the chain's status and progress watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_node_serves_its_rendered_status_on_its_raft_address() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (conn_tx, conn_rx) = transport::non_chain_channel();
    let mut cfg = josefine::raft::ChainNodeConfig::new(5, vec![(5, addr)], dir.path().into());
    cfg.non_chain = Some(conn_tx);
    let chain = josefine::raft::run_chain(cfg, std::future::pending())
        .await
        .unwrap();
    let (status, progress) = (chain.watch_status(), chain.watch_progress());
    let render = move || {
        let image = josefine_meta::Image::default();
        josefine::control::render_status(5, &status.borrow(), &progress.borrow(), &image)
    };
    tokio::spawn(ControlServer::new(TestHandler::new(true), Arc::new(render)).run(conn_rx));
    let mut leads = chain.watch_status();
    tokio::time::timeout(
        Duration::from_secs(10),
        leads.wait_for(|s| s.role == Role::Leader && s.commit.height >= 1),
    )
    .await
    .unwrap()
    .unwrap();
    let mut progress = chain.watch_progress();
    tokio::time::timeout(Duration::from_secs(5), progress.wait_for(|p| !p.is_empty()))
        .await
        .unwrap()
        .unwrap();
    let doc = josefine::control::fetch_status(&addr.to_string())
        .await
        .unwrap();
    assert!(doc.contains("leader 5, term 1, this node Leader"), "{doc}");
    assert!(doc.contains("voter progress:"), "{doc}");
    assert!(doc.contains("brokers (0)"), "{doc}");
}
