//! WriteTxnMarkers (API 27) at a partition leader: writing one transaction marker.
//!
//! Owns: [`Partition::append_marker_as_leader`], the leader-side write of one COMMIT or ABORT
//! marker (`PartitionLog::append_control_marker`) under the partition's role lock at the
//! image's leader epoch, after which the leader state moves the high watermark, as
//! `append_as_leader` does for produced batches. The request handler itself (decoding API 27
//! v1, one call per marker and partition, Kafka's per-partition error codes) is not served yet:
//! the API is neither decoded nor advertised until the transaction coordinator sends it
//! (issue 16).
//!
//! Must never: write a marker on a broker that does not lead the partition at the given
//! epoch, or outside the role lock (a demotion in between would let a stale leader write).

use josefine_log::AppendOutcome;

use crate::partitions::Partition;
use crate::replication::leader::LeaderAppendError;
use crate::replication::Role;

impl Partition {
    /// Write the marker ending `producer_id`'s transaction (COMMIT when `commit`) as the
    /// leader at `leader_epoch`, then let the leader state move the high watermark. The
    /// coordinator waits for the high watermark to pass it (acks=all) before it counts the
    /// marker written. NOT_LEADER_OR_FOLLOWER when this broker does not lead at that epoch;
    /// the log's INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED as they are.
    pub fn append_marker_as_leader(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, LeaderAppendError> {
        let mut role = self.replica.role.lock().expect("role lock");
        let Role::Leader(l) = &mut *role else {
            return Err(LeaderAppendError::NotLeader);
        };
        if l.leader_epoch != leader_epoch {
            return Err(LeaderAppendError::NotLeader);
        }
        let outcome = self
            .log
            .append_control_marker(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
                leader_epoch,
                now_ms,
            )
            .map_err(LeaderAppendError::Log)?;
        let effects = l.state.on_local_append(self.log.log_end_offset(), now_ms);
        self.apply_effects(l, effects, now_ms);
        Ok(outcome)
    }
}
