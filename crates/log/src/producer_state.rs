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
//! Must never: change state for a batch that was not written (check, then `record` after the
//! write succeeded), or grow without bound (`PRODUCERS_PER_PARTITION_MAX`).

use std::collections::{HashMap, VecDeque};

use crate::batch::{self, BatchHeader};
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

const SNAPSHOT_MAGIC: &[u8; 4] = b"JPS1";

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
        Ok(SequenceCheck::Append)
    }

    /// Remember a batch that is now in the log at `first_offset..=last_offset`.
    pub(crate) fn record(
        &mut self,
        h: &BatchHeader,
        first_offset: i64,
        last_offset: i64,
        timestamp: i64,
    ) {
        if !h.has_producer_id() {
            return;
        }
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            self.evict_oldest();
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
                last_timestamp: timestamp,
            });
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
    }

    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_timestamp) {
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

    /// Parse a snapshot; None if it is damaged in any way (the caller replays the log).
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Option<(ProducerStates, i64)> {
        if bytes.len() < 20 || &bytes[..4] != SNAPSHOT_MAGIC {
            return None;
        }
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
                },
            );
        }
        Some((ProducerStates { producers }, offset))
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
}
