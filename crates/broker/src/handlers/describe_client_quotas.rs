//! DescribeClientQuotas (v0-1): Josefine has no client quotas (issue 15 leaves them out), so
//! every filter matches nothing, as on a Kafka broker where none were set. Served because
//! `kafka-configs --describe --entity-type users` asks for quotas before it lists a user's SCRAM
//! credentials. Must never: claim a quota is enforced.

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

pub fn handle(_request: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    DescribeClientQuotasResponse::default()
        .with_error_code(0)
        .with_entries(Some(Vec::new()))
}
