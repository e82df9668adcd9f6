//! Sends a fixed script of consumer-group requests (error paths and edge cases, every version)
//! to a broker and prints one normalised line per answer, so the output of real Apache Kafka
//! and of Josefine can be diffed:
//!
//! ```text
//! cargo run -p josefine --example group_probe -- 127.0.0.1:9092 > kafka.txt
//! cargo run -p josefine --example group_probe -- 127.0.0.1:9192 > josefine.txt
//! diff kafka.txt josefine.txt
//! ```
//!
//! Member ids are random, so their uuid prints as `<uuid>`; multi-group answers come in
//! Kafka's coordinator-partition order, which clients do not rely on, so compare sorted lines.
//! `tests/group_probe.rs` runs the script against Josefine and compares it with
//! `tests/data/group_probe_kafka_4.1.2.txt`, this program's output against Kafka 4.1.2.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Conn {
            stream,
            correlation_id: 0,
        }
    }

    fn call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, v: i16, req: &Req) -> Resp {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("probe")))
            .encode(&mut buf, key.request_header_version(v))
            .unwrap();
        req.encode(&mut buf, v).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).unwrap();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(v)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        let resp = Resp::decode(&mut body, v).unwrap();
        assert!(!body.has_remaining(), "{key:?} v{v}: trailing bytes");
        resp
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// Member ids end in a random uuid (36 characters): keep only the prefix.
fn member(m: &str) -> String {
    match m.len().checked_sub(37) {
        Some(cut) if m.as_bytes()[cut] == b'-' => format!("{}-<uuid>", &m[..cut]),
        _ => m.to_string(),
    }
}

fn join(group: &str, member_id: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

fn commit(group: &str, generation: i32, member_id: &str, topic: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)
                .with_committed_metadata(Some(s("md")))])])
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    for line in run(&addr) {
        println!("{line}");
    }
}

/// Runs the script against `addr`; one normalised line per answer.
pub fn run(addr: &str) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! println {
        ($($arg:tt)*) => { out.push(format!($($arg)*)) };
    }
    let mut c = Conn::open(addr);

    // The coordinator (creates __consumer_offsets; retried while it is not available).
    for _ in 0..60 {
        let r: FindCoordinatorResponse = c.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s("probe")),
        );
        if r.error_code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for v in 0..=6 {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("probe"), s("")])
        } else {
            FindCoordinatorRequest::default().with_key(s("probe"))
        };
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req);
        let keys: Vec<String> = r
            .coordinators
            .iter()
            .map(|k| format!("{:?}={}/{}", k.key.as_str(), k.error_code, k.node_id.0))
            .collect();
        println!(
            "FindCoordinator v{v}: error {} node {} keys {keys:?}",
            r.error_code, r.node_id.0
        );
    }

    // A topic to commit to.
    let r: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("probe-t")))),
            ]))
            .with_allow_auto_topic_creation(true),
    );
    let _ = r;
    // Wait until every coordinator partition has loaded (Kafka loads them asynchronously after
    // creating the topic) and the topic exists.
    for _ in 0..120 {
        let r: DescribeGroupsResponse = c.call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("nope"), gid("")]),
        );
        let m: MetadataResponse = c.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(s("probe-t")))),
            ])),
        );
        if r.groups
            .iter()
            .all(|g| ![14, 15, 16].contains(&g.error_code))
            && m.topics[0].error_code == 0
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Requests for groups that do not exist.
    for v in 0..=6 {
        let r: DescribeGroupsResponse = c.call(
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![gid("nope"), gid("")]),
        );
        for g in &r.groups {
            println!(
                "DescribeGroups v{v} {:?}: error {} state {:?} type {:?} msg {:?}",
                g.group_id.0.as_str(),
                g.error_code,
                g.group_state.as_str(),
                g.protocol_type.as_str(),
                g.error_message.as_deref()
            );
        }
    }
    for v in 1..=9 {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid("nope"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("probe-t")))
                    .with_partition_indexes(vec![0, 7])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(gid("nope"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("probe-t")))
                    .with_partition_indexes(vec![0, 7])]))
        };
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
        let parts: Vec<String> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    format!(
                        "{}:{}/{}/{:?}/{}",
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata.as_deref(),
                        p.error_code
                    )
                })
            })
            .chain(r.groups.iter().flat_map(|g| {
                g.topics.iter().flat_map(move |t| {
                    t.partitions.iter().map(move |p| {
                        format!(
                            "g{}:{}:{}/{}/{:?}/{}",
                            g.error_code,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata.as_deref(),
                            p.error_code
                        )
                    })
                })
            }))
            .collect();
        println!("OffsetFetch v{v} nope: error {} {parts:?}", r.error_code);
    }
    for v in 0..=4 {
        let r: HeartbeatResponse = c.call(
            ApiKey::Heartbeat,
            v,
            &HeartbeatRequest::default()
                .with_group_id(gid("nope"))
                .with_generation_id(1)
                .with_member_id(s("m")),
        );
        println!("Heartbeat v{v} nope: {}", r.error_code);
    }
    for v in 0..=5 {
        let r: SyncGroupResponse = c.call(
            ApiKey::SyncGroup,
            v,
            &SyncGroupRequest::default()
                .with_group_id(gid("nope"))
                .with_generation_id(1)
                .with_member_id(s("m"))
                .with_protocol_type(if v >= 5 { Some(s("consumer")) } else { None })
                .with_protocol_name(if v >= 5 { Some(s("range")) } else { None }),
        );
        println!("SyncGroup v{v} nope: {}", r.error_code);
    }
    for v in 0..=5 {
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid("nope"))
                .with_members(vec![MemberIdentity::default().with_member_id(s("m"))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid("nope"))
                .with_member_id(s("m"))
        };
        let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, v, &req);
        let members: Vec<String> = r
            .members
            .iter()
            .map(|m| format!("{}={}", m.member_id.as_str(), m.error_code))
            .collect();
        println!("LeaveGroup v{v} nope: {} {members:?}", r.error_code);
    }
    for v in 0..=2 {
        let r: DeleteGroupsResponse = c.call(
            ApiKey::DeleteGroups,
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("nope"), gid("")]),
        );
        let mut results: Vec<String> = r
            .results
            .iter()
            .map(|g| format!("{:?}={}", g.group_id.0.as_str(), g.error_code))
            .collect();
        // Kafka answers in coordinator-partition order; clients match results by group id.
        results.sort();
        println!("DeleteGroups v{v}: {results:?}");
    }
    let od = |group: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(gid(group))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("probe-t")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])])
    };
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &od("nope"));
    println!(
        "OffsetDelete nope: {} topics {}",
        r.error_code,
        r.topics.len()
    );

    // Commits: simple (no generation) to a new group, then with a bogus generation/member.
    for v in 2..=9 {
        let r: OffsetCommitResponse = c.call(
            ApiKey::OffsetCommit,
            v,
            &commit("simple", -1, "", "probe-t"),
        );
        let r2: OffsetCommitResponse =
            c.call(ApiKey::OffsetCommit, v, &commit("nope2", 3, "m", "probe-t"));
        let r3: OffsetCommitResponse = c.call(
            ApiKey::OffsetCommit,
            v,
            &commit("simple", -1, "", "no-such-topic"),
        );
        println!(
            "OffsetCommit v{v}: simple {} bogus-generation {} unknown-topic {}",
            r.topics[0].partitions[0].error_code,
            r2.topics[0].partitions[0].error_code,
            r3.topics[0].partitions[0].error_code
        );
    }
    let mut beyond = commit("simple", -1, "", "probe-t");
    beyond.topics[0].partitions[0].partition_index = 7;
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 9, &beyond);
    println!(
        "OffsetCommit partition beyond the topic: {}",
        r.topics[0].partitions[0].error_code
    );
    let mut unknown = od("simple");
    unknown.topics[0].name = TopicName(s("no-such-topic"));
    unknown.topics.push(
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("probe-t")))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(7)
            ]),
    );
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &unknown);
    println!(
        "OffsetDelete unknown topic / partition: {} {:?}",
        r.error_code,
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect::<Vec<_>>()
    );
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 9, &commit("", -1, "", "probe-t"));
    println!(
        "OffsetCommit empty group id: {}",
        r.topics[0].partitions[0].error_code
    );
    for v in [1, 7, 8, 9] {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("simple"))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("nope"))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(gid("simple"))
                .with_topics(if v >= 2 {
                    None
                } else {
                    Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("probe-t")))
                        .with_partition_indexes(vec![0])])
                })
        };
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req);
        let mut parts: Vec<String> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    format!(
                        "{}:{}:{}/{}/{:?}",
                        t.name.0.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata.as_deref()
                    )
                })
            })
            .collect();
        for g in &r.groups {
            parts.push(format!(
                "group {} error {}",
                g.group_id.0.as_str(),
                g.error_code
            ));
            for t in &g.topics {
                for p in &t.partitions {
                    parts.push(format!(
                        "{}:{}:{}/{}/{:?}",
                        t.name.0.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata.as_deref()
                    ));
                }
            }
        }
        println!("OffsetFetch v{v} simple (all topics): {parts:?}");
    }
    for v in 0..=5 {
        let req = ListGroupsRequest::default().with_states_filter(if v >= 4 {
            vec![s("Empty")]
        } else {
            vec![]
        });
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &req);
        let mut groups: Vec<String> = r
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{}/{:?}/{:?}/{:?}",
                    g.group_id.0.as_str(),
                    g.protocol_type.as_str(),
                    g.group_state.as_str(),
                    g.group_type.as_str()
                )
            })
            .collect();
        groups.sort();
        println!("ListGroups v{v}: error {} {groups:?}", r.error_code);
    }

    // Membership: every JoinGroup version for a fresh group, then its life cycle.
    for v in 0..=9 {
        let group = format!("join-v{v}");
        let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &join(&group, "", None));
        let mut line = format!(
            "JoinGroup v{v} new: error {} generation {} member {} protocol {:?}",
            r.error_code,
            r.generation_id,
            member(r.member_id.as_str()),
            r.protocol_name.as_deref()
        );
        if r.error_code == 79 {
            let id = r.member_id.to_string();
            let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &join(&group, &id, None));
            line += &format!(
                " | rejoin: error {} generation {} leader-is-me {} members {} type {:?}",
                r.error_code,
                r.generation_id,
                r.leader == r.member_id,
                r.members.len(),
                r.protocol_type.as_deref()
            );
        }
        println!("{line}");
        let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &join(&group, "bogus", None));
        println!("JoinGroup v{v} unknown member: error {}", r.error_code);
    }
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &join("", "", None));
    println!("JoinGroup empty group id: {}", r.error_code);
    let mut bad = join("bad-timeout", "", None);
    bad.session_timeout_ms = 10;
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &bad);
    println!("JoinGroup session timeout 10: {}", r.error_code);
    let mut bad = join("bad-protocol", "", None);
    bad.protocols.clear();
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &bad);
    println!("JoinGroup no protocols: {}", r.error_code);

    // Static member: joins without MEMBER_ID_REQUIRED.
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &join("static", "", Some("i1")));
    println!(
        "JoinGroup static: error {} generation {} member {}",
        r.error_code,
        r.generation_id,
        member(r.member_id.as_str())
    );
    let static_id = r.member_id.to_string();
    let r: SyncGroupResponse = c.call(
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(gid("static"))
            .with_generation_id(1)
            .with_member_id(s(&static_id))
            .with_group_instance_id(Some(s("i1")))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("wrong"))),
    );
    println!("SyncGroup wrong protocol name: {}", r.error_code);
    let sync = |generation: i32, id: &str| {
        SyncGroupRequest::default()
            .with_group_id(gid("static"))
            .with_generation_id(generation)
            .with_member_id(s(id))
            .with_group_instance_id(Some(s("i1")))
    };
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(2, &static_id));
    println!("SyncGroup wrong generation: {}", r.error_code);
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(1, "other"));
    println!("SyncGroup fenced instance: {}", r.error_code);
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(1, &static_id));
    println!(
        "SyncGroup ok: {} assignment {:?}",
        r.error_code,
        r.assignment.len()
    );
    let hb = |generation: i32, id: &str| {
        HeartbeatRequest::default()
            .with_group_id(gid("static"))
            .with_generation_id(generation)
            .with_member_id(s(id))
            .with_group_instance_id(Some(s("i1")))
    };
    for (what, generation, id) in [
        ("ok", 1, static_id.as_str()),
        ("stale generation", 0, static_id.as_str()),
        ("fenced", 1, "other"),
    ] {
        let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb(generation, id));
        println!("Heartbeat {what}: {}", r.error_code);
    }
    let r: OffsetCommitResponse = c.call(
        ApiKey::OffsetCommit,
        9,
        &commit("static", 1, &static_id, "probe-t"),
    );
    println!(
        "OffsetCommit member: {}",
        r.topics[0].partitions[0].error_code
    );
    let r: OffsetCommitResponse = c.call(
        ApiKey::OffsetCommit,
        9,
        &commit("static", 2, &static_id, "probe-t"),
    );
    println!(
        "OffsetCommit stale generation: {}",
        r.topics[0].partitions[0].error_code
    );
    let r: OffsetCommitResponse = c.call(
        ApiKey::OffsetCommit,
        9,
        &commit("static", -1, "", "probe-t"),
    );
    println!(
        "OffsetCommit simple on a live group: {}",
        r.topics[0].partitions[0].error_code
    );
    let r: DescribeGroupsResponse = c.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid("static")]),
    );
    let g = &r.groups[0];
    println!(
        "DescribeGroups static: {} {:?} {:?} {:?} members {:?}",
        g.error_code,
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        g.protocol_data.as_str(),
        g.members
            .iter()
            .map(|m| (
                member(m.member_id.as_str()).to_string(),
                m.group_instance_id.as_deref().map(str::to_string),
                m.client_id.to_string(),
                m.member_metadata.len(),
                m.member_assignment.len()
            ))
            .collect::<Vec<_>>()
    );
    let r: DeleteGroupsResponse = c.call(
        ApiKey::DeleteGroups,
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![gid("static"), gid("simple")]),
    );
    let mut results: Vec<String> = r
        .results
        .iter()
        .map(|g| format!("{:?}={}", g.group_id.0.as_str(), g.error_code))
        .collect();
    results.sort();
    println!("DeleteGroups live and empty: {results:?}");
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &od("static"));
    println!(
        "OffsetDelete subscribed: {} {:?}",
        r.error_code,
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect::<Vec<_>>()
    );
    let r: LeaveGroupResponse = c.call(
        ApiKey::LeaveGroup,
        5,
        &LeaveGroupRequest::default()
            .with_group_id(gid("static"))
            .with_members(vec![
                MemberIdentity::default()
                    .with_member_id(s("other"))
                    .with_group_instance_id(Some(s("i1"))),
                MemberIdentity::default()
                    .with_member_id(s(""))
                    .with_group_instance_id(Some(s("i1"))),
                MemberIdentity::default().with_member_id(s("ghost")),
            ]),
    );
    println!(
        "LeaveGroup batch: {} {:?}",
        r.error_code,
        r.members
            .iter()
            .map(|m| format!(
                "{}/{:?}={}",
                member(m.member_id.as_str()),
                m.group_instance_id.as_deref(),
                m.error_code
            ))
            .collect::<Vec<_>>()
    );
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &od("static"));
    println!(
        "OffsetDelete after leave: {} {:?}",
        r.error_code,
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect::<Vec<_>>()
    );

    // A rebalance with two members, each on its own connection (a join parks until its round
    // completes, and a connection serves one request at a time).
    let group = "rebalance";
    let sync_req = |generation: i32, id: &str, assignments: &[(&str, &'static [u8])]| {
        SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(id))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            )
    };
    let heartbeat = |generation: i32, id: &str| {
        HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(id))
    };
    let mut a = Conn::open(addr);
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 9, &join(group, "", None));
    let a_id = r.member_id.to_string();
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 9, &join(group, &a_id, None));
    println!(
        "Rebalance A alone: error {} generation {} leader-is-A {} members {}",
        r.error_code,
        r.generation_id,
        r.leader.as_str() == a_id,
        r.members.len()
    );
    let mut bare = sync_req(1, &a_id, &[(&a_id, b"a1")]);
    bare.protocol_type = None;
    bare.protocol_name = None;
    let r: SyncGroupResponse = a.call(ApiKey::SyncGroup, 5, &bare);
    println!("Rebalance A sync v5 without protocol: {}", r.error_code);
    let r: SyncGroupResponse = a.call(ApiKey::SyncGroup, 5, &sync_req(1, &a_id, &[(&a_id, b"a1")]));
    println!("Rebalance A sync: {} {:?}", r.error_code, r.assignment);
    let mut b = Conn::open(addr);
    let r: JoinGroupResponse = b.call(ApiKey::JoinGroup, 9, &join(group, "", None));
    let b_id = r.member_id.to_string();
    let b_join = {
        let b_id = b_id.clone();
        std::thread::spawn(move || {
            let r: JoinGroupResponse =
                b.call(ApiKey::JoinGroup, 9, &join("rebalance", &b_id, None));
            (b, r)
        })
    };
    let mut hb = 0;
    for _ in 0..100 {
        let r: HeartbeatResponse = a.call(ApiKey::Heartbeat, 4, &heartbeat(1, &a_id));
        hb = r.error_code;
        if hb != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("Rebalance A heartbeat while B joins: {hb}");
    let r: OffsetCommitResponse =
        a.call(ApiKey::OffsetCommit, 9, &commit(group, 1, &a_id, "probe-t"));
    println!(
        "Rebalance A commit with the old generation while preparing: {}",
        r.topics[0].partitions[0].error_code
    );
    let ra: JoinGroupResponse = a.call(ApiKey::JoinGroup, 9, &join(group, &a_id, None));
    let (mut b, rb) = b_join.join().unwrap();
    println!(
        "Rebalance both joined: A error {} generation {} leader-is-A {} members {} | B error {} generation {} members {}",
        ra.error_code,
        ra.generation_id,
        ra.leader.as_str() == a_id,
        ra.members.len(),
        rb.error_code,
        rb.generation_id,
        rb.members.len()
    );
    let r: HeartbeatResponse = b.call(ApiKey::Heartbeat, 4, &heartbeat(2, &b_id));
    println!("Rebalance B heartbeat before sync: {}", r.error_code);
    let b_sync = {
        let b_id = b_id.clone();
        std::thread::spawn(move || {
            let req = SyncGroupRequest::default()
                .with_group_id(gid("rebalance"))
                .with_generation_id(2)
                .with_member_id(s(&b_id))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
            let r: SyncGroupResponse = b.call(ApiKey::SyncGroup, 5, &req);
            (b, r)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r: SyncGroupResponse = a.call(
        ApiKey::SyncGroup,
        5,
        &sync_req(2, &a_id, &[(&a_id, b"a2"), (&b_id, b"b2")]),
    );
    println!(
        "Rebalance A (leader) sync: {} {:?}",
        r.error_code, r.assignment
    );
    let (mut b, r) = b_sync.join().unwrap();
    println!(
        "Rebalance B (follower) sync: {} {:?}",
        r.error_code, r.assignment
    );
    let r: HeartbeatResponse = b.call(ApiKey::Heartbeat, 4, &heartbeat(1, &b_id));
    println!("Rebalance B stale heartbeat: {}", r.error_code);
    let r: LeaveGroupResponse = b.call(
        ApiKey::LeaveGroup,
        5,
        &LeaveGroupRequest::default()
            .with_group_id(gid(group))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&b_id))]),
    );
    println!(
        "Rebalance B leaves: {} {:?}",
        r.error_code,
        r.members.iter().map(|m| m.error_code).collect::<Vec<_>>()
    );
    let r: HeartbeatResponse = a.call(ApiKey::Heartbeat, 4, &heartbeat(2, &a_id));
    println!("Rebalance A heartbeat after B left: {}", r.error_code);
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 9, &join(group, &a_id, None));
    println!(
        "Rebalance A rejoins alone: error {} generation {} members {}",
        r.error_code,
        r.generation_id,
        r.members.len()
    );
    let r: DescribeGroupsResponse = a.call(
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
    );
    println!(
        "Rebalance describe: {:?} members {}",
        r.groups[0].group_state.as_str(),
        r.groups[0].members.len()
    );
    out
}
