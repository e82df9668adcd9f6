//! ListPartitionReassignments: always the empty list (kafka-reassign-partitions --list,
//! `Admin.listPartitionReassignments`).
//!
//! Josefine cannot reassign replicas yet, so no partition is ever being reassigned. Kafka's
//! controller answers named topics or partitions that are not being reassigned (unknown ones
//! included) by leaving them out, with no error, and so do we. Must never: invent an ongoing
//! reassignment; when replication arrives this reads the metadata image instead.

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::code;

pub fn handle(_request: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(code::NONE)
        .with_error_message(None)
        .with_topics(Vec::new())
}
