//! Shapes responses for the request's API version.
//!
//! Owns the per-version differences in response fields that the state machine should not
//! care about: fields that a version lacks are reset to their defaults (kafka-protocol refuses
//! to encode non-default values a version cannot carry), and strings that are non-nullable in
//! older versions get "" instead of null, as Kafka's response classes do.

use kafka_protocol::protocol::StrBytes;

use super::GroupResponse;

pub(super) fn fit(response: GroupResponse, v: i16) -> GroupResponse {
    match response {
        GroupResponse::JoinGroup(mut r) => {
            if r.error_code != 0 {
                // Kafka's error answers carry no protocol (null from v7, "" before).
                r.protocol_type = None;
                r.protocol_name = None;
            }
            if v < 7 {
                r.protocol_type = None;
                r.protocol_name = Some(r.protocol_name.unwrap_or_else(StrBytes::new));
            }
            if v < 9 {
                r.skip_assignment = false;
            }
            if v < 5 {
                for m in &mut r.members {
                    m.group_instance_id = None;
                }
            }
            GroupResponse::JoinGroup(r)
        }
        GroupResponse::SyncGroup(mut r) => {
            if v < 5 {
                r.protocol_type = None;
                r.protocol_name = None;
            }
            GroupResponse::SyncGroup(r)
        }
        GroupResponse::LeaveGroup(mut r) => {
            if v < 3 {
                r.members.clear();
            } else if v < 4 {
                for m in &mut r.members {
                    m.group_instance_id = None;
                }
            }
            GroupResponse::LeaveGroup(r)
        }
        GroupResponse::DescribeGroups(mut r) => {
            for g in &mut r.groups {
                if v < 6 {
                    g.error_message = None;
                }
                if v < 4 {
                    for m in &mut g.members {
                        m.group_instance_id = None;
                    }
                }
            }
            GroupResponse::DescribeGroups(r)
        }
        GroupResponse::ListGroups(mut r) => {
            for g in &mut r.groups {
                if v < 4 {
                    g.group_state = StrBytes::new();
                }
                if v < 5 {
                    g.group_type = StrBytes::new();
                }
            }
            GroupResponse::ListGroups(r)
        }
        GroupResponse::OffsetFetch(mut r) => {
            if v < 5 {
                for t in &mut r.topics {
                    for p in &mut t.partitions {
                        p.committed_leader_epoch = -1;
                    }
                }
            }
            if v < 2 {
                r.error_code = 0;
            }
            GroupResponse::OffsetFetch(r)
        }
        other => other,
    }
}
