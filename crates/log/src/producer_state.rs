//! Idempotent-producer state of one partition: per producer id, its epoch and the last 5
//! batches (sequence range, offsets, timestamp); and its snapshot file.
//!
//! Owns: Kafka 4.1's rules (`ProducerAppendInfo.checkProducerEpoch/checkSequence`,
//! `ProducerStateEntry.findDuplicateBatch`):
//! - same epoch and the exact (first, last) sequence of a remembered batch: a duplicate, answered
//!   with the original offsets and not written again;
//! - epoch older than the known one: INVALID_PRODUCER_EPOCH;
//! - newer epoch: the first sequence must be 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - same epoch: the first sequence must follow the last one (i32::MAX wraps to 0), else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - no state for the producer (new, or expired): any sequence is accepted. This is KIP-360's
//!   broker side since Kafka 2.5: UNKNOWN_PRODUCER_ID is no longer returned for it.
//!
//!
//! Transactions (`ProducerAppendInfo.appendDataBatch/appendEndTxnMarker`): a transactional
//! batch of a producer with no ongoing transaction opens one at its first offset; a
//! non-transactional batch while one is open is INVALID_TXN_STATE; a marker (control batch)
//! ends it and records the coordinator epoch. A marker's producer epoch older than the known
//! one is INVALID_PRODUCER_EPOCH, its coordinator epoch older than the last marker's
//! TRANSACTION_COORDINATOR_FENCED (leader appends only: a follower takes what the leader
//! wrote). A marker with no transaction open still ends "nothing" and updates the epochs (the
//! coordinator resends markers). [`TxnOffsets`] keeps the first offsets of open transactions and
//! of ended ones whose marker is not yet below the high watermark: the last stable offset is
//! the smallest of them (Kafka's `firstUnstableOffset`).
//!
//! Must never: change state for a batch that was not written (check, then `record` after the
//! write succeeded), or grow without bound (`PRODUCERS_PER_PARTITION_MAX`; a producer with an
//! open transaction is never evicted, so the map may exceed it by producers in transactions,
//! which the transaction coordinator bounds).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::{self, BatchHeader};
use crate::control::EndTxnMarker;
use crate::error::LogError;
use crate::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_RETAINED};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_timestamp: i64,
    /// Coordinator epoch of the last marker (-1: none yet).
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction.
    txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    /// DescribeProducers' fields of this producer.
    fn info(&self, producer_id: i64) -> crate::ProducerInfo {
        crate::ProducerInfo {
            producer_id,
            producer_epoch: self.epoch,
            last_sequence: self
                .batches
                .back()
                .map_or(batch::NO_SEQUENCE, |b| b.last_seq),
            last_timestamp: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_start_offset: self.txn_first_offset.unwrap_or(-1),
        }
    }

    fn new(epoch: i16, timestamp: i64) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
            last_timestamp: timestamp,
            coordinator_epoch: -1,
            txn_first_offset: None,
        }
    }
}

/// A transaction a marker ended (Kafka's `CompletedTxn`): only for a producer that had one
/// open, so markers with nothing to end leave no trace in the LSO or the transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// The marker's offset.
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Not from an idempotent producer, or in sequence: write it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq as i64 == last_seq as i64 + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// Snapshot format v1 (before transactions): no coordinator epoch, no open transaction.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"JPS1";
/// Snapshot format v2: each entry adds the coordinator epoch (i32) and the open transaction's
/// first offset (i64, -1 for none) after the last timestamp.
const SNAPSHOT_MAGIC: &[u8; 4] = b"JPS2";

impl ProducerStates {
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if !h.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch == entry.epoch {
            let last_seq = h.last_sequence();
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            {
                return Ok(SequenceCheck::Duplicate(*dup));
            }
        }
        if h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than the last seen epoch {}",
                h.producer_id, h.producer_epoch, entry.epoch
            )));
        }
        if h.producer_epoch != entry.epoch {
            if h.base_sequence != 0 && entry.epoch != batch::NO_PRODUCER_EPOCH {
                return Err(LogError::OutOfOrderSequence(format!(
                    "producer {} new epoch {} must start at sequence 0, got {}",
                    h.producer_id, h.producer_epoch, h.base_sequence
                )));
            }
            return Ok(SequenceCheck::Append);
        }
        let last_seq = entry
            .batches
            .back()
            .map_or(batch::NO_SEQUENCE, |b| b.last_seq);
        if entry.epoch != batch::NO_PRODUCER_EPOCH && !in_sequence(last_seq, h.base_sequence) {
            return Err(LogError::OutOfOrderSequence(format!(
                "producer {} epoch {}: sequence {} does not follow {}",
                h.producer_id, h.producer_epoch, h.base_sequence, last_seq
            )));
        }
        Self::check_txn(entry, h)?;
        Ok(SequenceCheck::Append)
    }

    fn check_txn(entry: &ProducerEntry, h: &BatchHeader) -> Result<(), LogError> {
        if entry.txn_first_offset.is_some() && !h.is_transactional() {
            return Err(LogError::InvalidTxnState(format!(
                "producer {} wrote a non-transactional batch while its transaction is open",
                h.producer_id
            )));
        }
        Ok(())
    }

    /// Leader-side checks of a marker (`ProducerAppendInfo.checkProducerEpoch` and
    /// `checkCoordinatorEpoch`): INVALID_PRODUCER_EPOCH for a producer epoch older than the
    /// known one, TRANSACTION_COORDINATOR_FENCED for a coordinator epoch older than the last
    /// marker's.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), LogError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "marker for producer {producer_id} has epoch {producer_epoch}, older than the last seen epoch {}",
                entry.epoch
            )));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(LogError::TransactionCoordinatorFenced(format!(
                "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older than {}",
                entry.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// Remember a marker now in the log at `offset` (`ProducerStateEntry.update`): a new
    /// producer epoch forgets the remembered batches, the coordinator epoch is taken, the open
    /// transaction (if any) ends and is returned.
    pub(crate) fn record_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        offset: i64,
        timestamp: i64,
    ) -> Option<CompletedTxn> {
        if !self.producers.contains_key(&producer_id)
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_epoch, timestamp));
        if entry.epoch != producer_epoch {
            entry.batches.clear();
            entry.epoch = producer_epoch;
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = timestamp;
        entry
            .txn_first_offset
            .take()
            .map(|first_offset| CompletedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
                aborted: !marker.commit,
            })
    }

    /// Every producer's state, by producer id (DescribeProducers' fields).
    pub(crate) fn describe(&self) -> Vec<crate::ProducerInfo> {
        let mut out: Vec<crate::ProducerInfo> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| e.info(producer_id))
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// One producer's state, if remembered: a map lookup (the transactional produce path asks
    /// this for every batch; `describe` walks every producer).
    pub(crate) fn get(&self, producer_id: i64) -> Option<crate::ProducerInfo> {
        self.producers
            .get(&producer_id)
            .map(|e| e.info(producer_id))
    }

    /// The open transactions: (producer id, first offset).
    pub(crate) fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.producers
            .iter()
            .filter_map(|(&pid, e)| e.txn_first_offset.map(|first| (pid, first)))
    }

    /// Remember a data batch (not a control batch: see `record_marker`) that is now in the
    /// log at `first_offset..=last_offset`. Returns the first offset of the transaction it
    /// opened, if it is the first transactional batch since the producer's last marker.
    pub(crate) fn record(
        &mut self,
        h: &BatchHeader,
        first_offset: i64,
        last_offset: i64,
        timestamp: i64,
    ) -> Option<i64> {
        debug_assert!(!h.is_control(), "markers go through record_marker");
        if !h.has_producer_id() {
            return None;
        }
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch, timestamp));
        if entry.epoch != h.producer_epoch {
            entry.batches.clear();
            entry.epoch = h.producer_epoch;
        }
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset,
            last_offset,
            timestamp,
        });
        entry.last_timestamp = timestamp;
        if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(first_offset);
            return Some(first_offset);
        }
        None
    }

    /// Forget the least recently active producer without an open transaction (one with an
    /// open transaction holds the LSO back until its marker: forgetting it would lose that).
    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self
            .producers
            .iter()
            .filter(|(_, e)| e.txn_first_offset.is_none())
            .min_by_key(|(_, e)| e.last_timestamp)
        {
            self.producers.remove(&pid);
        }
    }

    /// Last offset of the producer's newest batch in the log, if we know the producer.
    pub(crate) fn last_offset(&self, producer_id: i64) -> Option<i64> {
        self.producers
            .get(&producer_id)
            .and_then(|e| e.batches.back())
            .map(|b| b.last_offset)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Snapshot bytes: magic, offset (state covers offsets below it), count, entries, CRC32C.
    pub(crate) fn to_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.producers.len() * 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parse a snapshot (v2, or v1 from before transactions: no coordinator epoch, nothing
    /// open); None if it is damaged in any way (the caller replays the log).
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Option<(ProducerStates, i64)> {
        if bytes.len() < 20 {
            return None;
        }
        let v2 = match &bytes[..4] {
            m if m == SNAPSHOT_MAGIC => true,
            m if m == SNAPSHOT_MAGIC_V1 => false,
            _ => return None,
        };
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = body;
        let mut take = |n: usize| -> Option<&[u8]> {
            if r.len() < n {
                return None;
            }
            let (a, b) = r.split_at(n);
            r = b;
            Some(a)
        };
        let _magic = take(4)?;
        let offset = i64::from_be_bytes(take(8)?.try_into().ok()?);
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
        if count > PRODUCERS_PER_PARTITION_MAX {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let last_timestamp = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let (coordinator_epoch, txn_first_offset) = if v2 {
                let coordinator_epoch = i32::from_be_bytes(take(4)?.try_into().ok()?);
                let first = i64::from_be_bytes(take(8)?.try_into().ok()?);
                (coordinator_epoch, (first >= 0).then_some(first))
            } else {
                (-1, None)
            };
            let n = take(1)?[0] as usize;
            if n > PRODUCER_BATCHES_RETAINED {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    last_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    first_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    last_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    timestamp: i64::from_be_bytes(take(8)?.try_into().ok()?),
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    coordinator_epoch,
                    txn_first_offset,
                },
            );
        }
        Some((ProducerStates { producers }, offset))
    }
}

/// Where the unstable part of the log starts: the first offsets of open transactions, and of
/// ended ones whose marker the high watermark has not passed yet (Kafka's `ongoingTxns` and
/// `unreplicatedTxns`: a marker that could still be lost with a leader change must not let
/// read_committed consumers past its transaction). Kept beside the producer state, under its
/// own small lock, so fetches read the LSO without waiting for appends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TxnOffsets {
    /// First offset -> producer id, of every open transaction.
    open: BTreeMap<i64, i64>,
    /// First offset -> marker offset, of ended transactions whose marker may be at or above
    /// the high watermark (pruned lazily once the high watermark passes the marker).
    ended: BTreeMap<i64, i64>,
}

impl TxnOffsets {
    /// The open transactions of a loaded producer state (nothing ended yet).
    pub(crate) fn from_producers(producers: &ProducerStates) -> TxnOffsets {
        TxnOffsets {
            open: producers
                .open_transactions()
                .map(|(pid, first)| (first, pid))
                .collect(),
            ended: BTreeMap::new(),
        }
    }

    pub(crate) fn opened(&mut self, producer_id: i64, first_offset: i64) {
        self.open.insert(first_offset, producer_id);
    }

    /// The LSO stored in a transaction index entry for `txn` (Kafka's
    /// `ProducerStateManager.lastStableOffset(completedTxn)`): the first offset of the oldest
    /// transaction of another producer still open, else the offset after the marker. Call
    /// before [`TxnOffsets::ended`].
    pub(crate) fn index_lso(&self, txn: &CompletedTxn) -> i64 {
        self.open
            .iter()
            .find(|(_, &pid)| pid != txn.producer_id)
            .map_or(txn.last_offset + 1, |(&first, _)| first)
    }

    /// `txn`'s marker is in the log: it stays unstable until the high watermark passes the
    /// marker.
    pub(crate) fn ended(&mut self, txn: &CompletedTxn, high_watermark: i64) {
        self.open.remove(&txn.first_offset);
        self.ended.insert(txn.first_offset, txn.last_offset);
        self.prune(high_watermark);
    }

    fn prune(&mut self, high_watermark: i64) {
        self.ended.retain(|_, &mut marker| marker >= high_watermark);
    }

    /// Kafka's `firstUnstableOffset` at this high watermark (which never moves back except by
    /// truncation, and truncation rebuilds this state).
    pub(crate) fn first_unstable(&mut self, high_watermark: i64) -> Option<i64> {
        self.prune(high_watermark);
        let open = self.open.keys().next().copied();
        let ended = self.ended.keys().next().copied();
        match (open, ended) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::BatchBuilder;

    fn hdr(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        BatchHeader::parse(
            &BatchBuilder::new(0)
                .records(n)
                .producer(pid, epoch, seq)
                .build(),
        )
        .unwrap()
    }

    fn code(r: Result<SequenceCheck, LogError>) -> i16 {
        r.unwrap_err().kafka_error_code()
    }

    #[test]
    fn in_order_duplicate_gap_and_epochs() {
        let mut s = ProducerStates::default();
        let a = hdr(1, 0, 0, 3);
        assert_eq!(s.check(&a).unwrap(), SequenceCheck::Append);
        s.record(&a, 0, 2, 10);
        let b = hdr(1, 0, 3, 2);
        assert_eq!(s.check(&b).unwrap(), SequenceCheck::Append);
        s.record(&b, 3, 4, 11);
        // Retry of the first batch: duplicate with its original offsets.
        match s.check(&a).unwrap() {
            SequenceCheck::Duplicate(m) => assert_eq!((m.first_offset, m.last_offset), (0, 2)),
            other => panic!("{other:?}"),
        }
        // Gap.
        assert_eq!(code(s.check(&hdr(1, 0, 6, 1))), 45);
        // Overlapping but not identical range: out of order, not duplicate.
        assert_eq!(code(s.check(&hdr(1, 0, 1, 2))), 45);
        // Older epoch.
        s.record(&hdr(1, 2, 0, 1), 5, 5, 12);
        assert_eq!(code(s.check(&hdr(1, 1, 1, 1))), 47);
        // Newer epoch must start at 0.
        assert_eq!(code(s.check(&hdr(1, 3, 5, 1))), 45);
        assert_eq!(s.check(&hdr(1, 3, 0, 1)).unwrap(), SequenceCheck::Append);
        // After the epoch bump, old-epoch batches are no longer duplicates.
        s.record(&hdr(1, 3, 0, 1), 6, 6, 13);
        assert_eq!(code(s.check(&a)), 47);
    }

    #[test]
    fn unknown_producer_accepts_any_sequence() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&hdr(9, 4, 1234, 1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        let mut first = None;
        for seq in 0..6 {
            let h = hdr(1, 0, seq, 1);
            assert_eq!(s.check(&h).unwrap(), SequenceCheck::Append);
            s.record(&h, seq as i64, seq as i64, 0);
            first.get_or_insert(h);
        }
        // The first batch fell out of the window: a retry of it is now out of order.
        assert_eq!(code(s.check(&first.unwrap())), 45);
        assert!(matches!(
            s.check(&hdr(1, 0, 1, 1)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
    }

    #[test]
    fn sequence_wraps_from_i32_max_to_zero() {
        let mut s = ProducerStates::default();
        let h = hdr(1, 0, i32::MAX - 1, 2); // covers MAX-1, MAX
        assert_eq!(h.last_sequence(), i32::MAX);
        s.record(&h, 0, 1, 0);
        assert_eq!(s.check(&hdr(1, 0, 0, 1)).unwrap(), SequenceCheck::Append);
        assert_eq!(code(s.check(&hdr(1, 0, 1, 1))), 45);
        // A batch straddling the wrap: base MAX, 3 records -> last 1.
        let w = hdr(2, 0, i32::MAX, 3);
        assert_eq!(w.last_sequence(), 1);
        s.record(&w, 2, 4, 0);
        assert_eq!(s.check(&hdr(2, 0, 2, 1)).unwrap(), SequenceCheck::Append);
        assert!(matches!(s.check(&w).unwrap(), SequenceCheck::Duplicate(_)));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let mut s = ProducerStates::default();
        for pid in 0..50 {
            for seq in 0..7 {
                s.record(
                    &hdr(pid, 1, seq, 1),
                    pid * 100 + seq as i64,
                    pid * 100 + seq as i64,
                    seq as i64,
                );
            }
        }
        let snap = s.to_snapshot(12345);
        let (back, off) = ProducerStates::from_snapshot(&snap).unwrap();
        assert_eq!(off, 12345);
        assert_eq!(back, s);
        for i in [0, 5, snap.len() / 2, snap.len() - 1] {
            let mut bad = snap.clone();
            bad[i] ^= 1;
            assert!(ProducerStates::from_snapshot(&bad).is_none(), "flip at {i}");
        }
        assert!(ProducerStates::from_snapshot(&snap[..snap.len() - 3]).is_none());
    }

    fn txn_hdr(pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        BatchHeader::parse(
            &BatchBuilder::new(0)
                .records(1)
                .producer(pid, epoch, seq)
                .attributes_extra(0x10)
                .build(),
        )
        .unwrap()
    }

    const COMMIT: EndTxnMarker = EndTxnMarker {
        commit: true,
        coordinator_epoch: 4,
    };

    #[test]
    fn the_first_transactional_batch_opens_a_transaction_and_a_marker_ends_it() {
        let mut s = ProducerStates::default();
        assert_eq!(s.record(&txn_hdr(1, 0, 0), 10, 10, 0), Some(10));
        assert_eq!(
            s.record(&txn_hdr(1, 0, 1), 12, 12, 0),
            None,
            "still the same one"
        );
        assert_eq!(s.open_transactions().collect::<Vec<_>>(), vec![(1, 10)]);
        let ended = s.record_marker(1, 0, COMMIT, 13, 5).unwrap();
        assert_eq!(
            ended,
            CompletedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 13,
                aborted: false
            }
        );
        assert_eq!(s.open_transactions().count(), 0);
        // Nothing open: a resent marker ends nothing.
        assert_eq!(s.record_marker(1, 0, COMMIT, 14, 5), None);
        // The remembered batches survive a same-epoch marker (a retry is still a duplicate).
        assert!(matches!(
            s.check(&txn_hdr(1, 0, 1)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        // A marker with a new epoch forgets them, as a new epoch does.
        s.record_marker(1, 1, COMMIT, 15, 5);
        assert_eq!(s.check(&txn_hdr(1, 1, 0)).unwrap(), SequenceCheck::Append);
        assert_eq!(code(s.check(&txn_hdr(1, 0, 2))), 47);
    }

    #[test]
    fn marker_checks_are_epochs_only() {
        let mut s = ProducerStates::default();
        s.check_marker(1, 0, 0).unwrap(); // unknown producer
        s.record(&txn_hdr(1, 2, 0), 0, 0, 0);
        s.record_marker(1, 2, COMMIT, 1, 0);
        assert_eq!(s.check_marker(1, 1, 4).unwrap_err().kafka_error_code(), 47);
        assert_eq!(s.check_marker(1, 2, 3).unwrap_err().kafka_error_code(), 52);
        s.check_marker(1, 2, 4).unwrap();
        s.check_marker(1, 3, 9).unwrap();
    }

    #[test]
    fn producers_in_a_transaction_are_never_evicted() {
        let mut s = ProducerStates::default();
        s.record(&txn_hdr(1, 0, 0), 0, 0, 0); // oldest, in a transaction
        for pid in 2..PRODUCERS_PER_PARTITION_MAX as i64 + 1 {
            s.record(&hdr(pid, 0, 0, 1), pid, pid, pid);
        }
        assert_eq!(s.len(), PRODUCERS_PER_PARTITION_MAX);
        s.record(&hdr(-5 + 1_000_000_000, 0, 0, 1), 0, 0, 1_000_000);
        assert_eq!(s.open_transactions().collect::<Vec<_>>(), vec![(1, 0)]);
        assert!(
            !s.producers.contains_key(&2),
            "the oldest without a transaction went"
        );
    }

    #[test]
    fn snapshot_v2_keeps_open_transactions_and_v1_still_loads() {
        let mut s = ProducerStates::default();
        s.record(&txn_hdr(1, 0, 0), 7, 7, 3);
        s.record(&hdr(2, 0, 0, 1), 8, 8, 4);
        s.record_marker(2, 0, COMMIT, 9, 4);
        let (back, _) = ProducerStates::from_snapshot(&s.to_snapshot(10)).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.open_transactions().collect::<Vec<_>>(), vec![(1, 7)]);
        assert_eq!(
            back.check_marker(2, 0, 3).unwrap_err().kafka_error_code(),
            52
        );
        // v1, as written before transactions: one producer, one batch.
        let mut v1 = b"JPS1".to_vec();
        v1.extend_from_slice(&10i64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&2i16.to_be_bytes());
        v1.extend_from_slice(&99i64.to_be_bytes());
        v1.push(1);
        for v in [0i32, 2] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [4i64, 6, 99] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let (old, at) = ProducerStates::from_snapshot(&v1).unwrap();
        assert_eq!(at, 10);
        assert_eq!(old.open_transactions().count(), 0);
        assert_eq!(old.last_offset(5), Some(6));
        assert!(matches!(
            old.check(&hdr(5, 2, 0, 3)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        old.check_marker(5, 2, 0).unwrap();
    }

    #[test]
    fn txn_offsets_keep_an_ended_transaction_until_the_high_watermark_passes_its_marker() {
        let mut t = TxnOffsets::default();
        t.opened(1, 5);
        t.opened(2, 8);
        let one = CompletedTxn {
            producer_id: 1,
            first_offset: 5,
            last_offset: 10,
            aborted: true,
        };
        assert_eq!(t.index_lso(&one), 8, "pid 2 is still open");
        t.ended(&one, 10);
        assert_eq!(t.first_unstable(10), Some(5));
        assert_eq!(t.first_unstable(11), Some(8));
        let two = CompletedTxn {
            producer_id: 2,
            first_offset: 8,
            last_offset: 11,
            aborted: false,
        };
        assert_eq!(t.index_lso(&two), 12);
        t.ended(&two, 11);
        assert_eq!(t.first_unstable(11), Some(8));
        assert_eq!(t.first_unstable(12), None);
    }
}
