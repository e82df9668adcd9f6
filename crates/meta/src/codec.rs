//! The byte layout shared by commands and image snapshots: big-endian integers, u32-length
//! strings and lists, option flags, partition assignments.
//!
//! Owns: reading and writing those fields. Must never: allocate from a declared count before
//! checking it against the bytes present ([`Reader::count`]), so hostile input cannot make a
//! decoder reserve more than its input could hold.

use crate::acl::{Acl, AclId, Operation, PatternType, Permission, ResourceType};
use crate::command::{ListenerEndpoint, PartitionAssignment, TopicId};
use crate::scram::{ScramCredential, ScramMechanism};
use crate::MetaError;

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i32s(&mut self, items: &[i32]) {
        self.len(items.len());
        for i in items {
            self.i32(*i);
        }
    }
    pub(crate) fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("metadata command field longer than u32::MAX");
        self.0.extend_from_slice(&n.to_be_bytes());
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    pub(crate) fn bool(&mut self, b: bool) {
        self.u8(u8::from(b));
    }
    pub(crate) fn topic_id(&mut self, id: &TopicId) {
        self.0.extend_from_slice(&id.0);
    }
    pub(crate) fn pairs(&mut self, pairs: &[(String, String)]) {
        self.len(pairs.len());
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }
    pub(crate) fn strs(&mut self, items: &[String]) {
        self.len(items.len());
        for i in items {
            self.str(i);
        }
    }
    pub(crate) fn listeners(&mut self, listeners: &[ListenerEndpoint]) {
        self.len(listeners.len());
        for l in listeners {
            self.str(&l.name);
            self.str(&l.host);
            self.i32(l.port);
            self.0.extend_from_slice(&l.security_protocol.to_be_bytes());
        }
    }
    pub(crate) fn assignments(&mut self, partitions: &[PartitionAssignment]) {
        self.len(partitions.len());
        for p in partitions {
            self.i32(p.partition);
            self.i32s(&p.replicas);
            self.i32(p.leader);
            self.i32(p.leader_epoch);
            self.i32(p.partition_epoch);
            self.i32s(&p.isr);
        }
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    pub(crate) fn scram_credential(&mut self, c: &ScramCredential) {
        self.bytes(&c.salt);
        self.bytes(&c.stored_key);
        self.bytes(&c.server_key);
        self.i32(c.iterations);
    }
    pub(crate) fn acl(&mut self, id: AclId, acl: &Acl) {
        self.u128(id.0);
        self.u8(acl.resource_type.code() as u8);
        self.str(&acl.resource_name);
        self.u8(acl.pattern_type.code() as u8);
        self.str(&acl.principal);
        self.str(&acl.host);
        self.u8(acl.operation.code() as u8);
        self.u8(acl.permission.code() as u8);
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    /// Assignments in the version-1 layout (bare replica lists).
    pub(crate) legacy_v1: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], MetaError> {
        if self.bytes.len() < n {
            return Err(MetaError::Decode(format!(
                "truncated: need {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, MetaError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn i32(&mut self) -> Result<i32, MetaError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, MetaError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, MetaError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn u128(&mut self) -> Result<u128, MetaError> {
        Ok(u128::from_be_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    pub(crate) fn i32s(&mut self) -> Result<Vec<i32>, MetaError> {
        let n = self.count(4)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.i32()?);
        }
        Ok(items)
    }
    pub(crate) fn option_flag(&mut self) -> Result<bool, MetaError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(MetaError::Decode(format!("bad option flag {other}"))),
        }
    }
    /// A declared count, checked against the bytes left given each element's minimum size.
    pub(crate) fn count(&mut self, min_element_bytes: usize) -> Result<usize, MetaError> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n.saturating_mul(min_element_bytes.max(1)) > self.bytes.len() {
            return Err(MetaError::Decode(format!(
                "declared count {n} exceeds the bytes left"
            )));
        }
        Ok(n)
    }
    pub(crate) fn str(&mut self) -> Result<String, MetaError> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| MetaError::Decode("string is not UTF-8".into()))
    }
    pub(crate) fn bool(&mut self) -> Result<bool, MetaError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(MetaError::Decode(format!("bad bool {other}"))),
        }
    }
    pub(crate) fn topic_id(&mut self) -> Result<TopicId, MetaError> {
        Ok(TopicId(self.take(16)?.try_into().expect("16 bytes")))
    }
    pub(crate) fn pairs(&mut self) -> Result<Vec<(String, String)>, MetaError> {
        let n = self.count(8)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.str()?, self.str()?));
        }
        Ok(pairs)
    }
    pub(crate) fn strs(&mut self) -> Result<Vec<String>, MetaError> {
        let n = self.count(4)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.str()?);
        }
        Ok(items)
    }
    pub(crate) fn listeners(&mut self) -> Result<Vec<ListenerEndpoint>, MetaError> {
        // Two string lengths, a port and a protocol.
        let n = self.count(4 + 4 + 4 + 2)?;
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            listeners.push(ListenerEndpoint {
                name: self.str()?,
                host: self.str()?,
                port: self.i32()?,
                security_protocol: i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")),
            });
        }
        Ok(listeners)
    }
    pub(crate) fn assignments(&mut self) -> Result<Vec<PartitionAssignment>, MetaError> {
        let n = self.count(8)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let partition = self.i32()?;
            let replicas = self.i32s()?;
            if self.legacy_v1 {
                partitions.push(PartitionAssignment::led_by_first(partition, replicas));
                continue;
            }
            partitions.push(PartitionAssignment {
                partition,
                replicas,
                leader: self.i32()?,
                leader_epoch: self.i32()?,
                partition_epoch: self.i32()?,
                isr: self.i32s()?,
            });
        }
        Ok(partitions)
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, MetaError> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn scram_mechanism(&mut self) -> Result<ScramMechanism, MetaError> {
        let code = self.u8()?;
        ScramMechanism::from_code(code as i8)
            .ok_or_else(|| MetaError::Decode(format!("unknown SCRAM mechanism {code}")))
    }
    pub(crate) fn scram_credential(&mut self) -> Result<ScramCredential, MetaError> {
        Ok(ScramCredential {
            salt: self.bytes()?,
            stored_key: self.bytes()?,
            server_key: self.bytes()?,
            iterations: self.i32()?,
        })
    }
    /// One ACL with its id, as [`Writer::acl`] wrote it; unknown codes are refused.
    pub(crate) fn acl(&mut self) -> Result<(AclId, Acl), MetaError> {
        let bad =
            |what: &str, code: u8| MetaError::Decode(format!("unknown ACL {what} code {code}"));
        let id = AclId(self.u128()?);
        let code = self.u8()?;
        let resource_type =
            ResourceType::from_code(code as i8).ok_or(bad("resource type", code))?;
        let resource_name = self.str()?;
        let code = self.u8()?;
        let pattern_type = PatternType::from_code(code as i8).ok_or(bad("pattern type", code))?;
        let principal = self.str()?;
        let host = self.str()?;
        let code = self.u8()?;
        let operation = Operation::from_code(code as i8).ok_or(bad("operation", code))?;
        let code = self.u8()?;
        let permission = Permission::from_code(code as i8).ok_or(bad("permission", code))?;
        Ok((
            id,
            Acl {
                resource_type,
                resource_name,
                pattern_type,
                principal,
                host,
                operation,
                permission,
            },
        ))
    }
}
