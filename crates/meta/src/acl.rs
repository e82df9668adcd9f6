//! Access control lists and the authorization decision, with Kafka's `StandardAuthorizer`
//! semantics.
//!
//! Owns: what an ACL *is* (resource type, pattern, principal, host, operation, permission, with
//! Kafka's wire codes), which ACLs may be created ([`validate_new_acl`]), how a filter matches
//! (DescribeAcls/DeleteAcls, [`AclFilter`]), the index of ACLs held in the [`crate::Image`]
//! ([`AclIndex`]) and the decision itself ([`AclIndex::authorize`]): a super user is allowed;
//! else any matching DENY denies; else a matching ALLOW on the operation, on ALL, or (ALLOW
//! only) on an operation implying it (READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS
//! implies DESCRIBE_CONFIGS) allows; else, when no ACL at all names the resource (for any
//! principal), `allow.everyone.if.no.acl.found` decides; else deny. An ACL names a resource when
//! it is LITERAL with the same name or `*`, or PREFIXED with a prefix of the name.
//! Must never: read clocks, sockets or configuration files. The decision is a pure function of an
//! image and its inputs, so every broker that applied the same commands decides alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Most ACLs one CreateAcls or DeleteAcls command may carry: Kafka's controller refuses more
/// than `MAX_RECORDS_PER_USER_OP` (10,000) records for one request, and the bound keeps one apply
/// (and one chain block) small.
pub const ACLS_PER_COMMAND_MAX: usize = 10_000;

/// The only valid name of the CLUSTER resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// A LITERAL resource name (or an ACL host) matching every resource (host).
pub const WILDCARD: &str = "*";

/// The principal an ACL names to match every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's resource types with their wire codes (`ResourceType`). UNKNOWN (0) and ANY (1) exist
/// only in filters and requests, never in a stored ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ];

    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The operations an ACL on this type can grant, as Kafka lists them for
    /// `*_authorized_operations` (its `AclEntry.supportedOperations`).
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// How an ACL's resource name matches (`PatternType`): LITERAL (`*` matching every name) or
/// PREFIXED. MATCH (2) and ANY (1) exist only in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

impl PatternType {
    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

/// Kafka's ACL operations with their wire codes (`AclOperation`). UNKNOWN (0) and ANY (1) exist
/// only in filters and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
    TwoPhaseCommit = 15,
}

impl Operation {
    pub const ALL_OPS: [Operation; 14] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
        Operation::TwoPhaseCommit,
    ];

    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::ALL_OPS.into_iter().find(|o| o.code() == code)
    }

    /// Whether an ALLOW ACL for `self` grants `requested` (never used for DENY: a DENY only
    /// denies its own operation or, as ALL, every one).
    fn allow_grants(self, requested: Operation) -> bool {
        use Operation::*;
        self == All
            || self == requested
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }
}

/// ALLOW or DENY (`AclPermissionType` codes 3 and 2; ANY (1) only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

impl Permission {
    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL (Kafka's `AclBinding`): who may or may not do what, from where, on which resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, e.g. `User:alice`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// A client address as Java prints it, or [`WILDCARD`].
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    /// Whether this ACL names the resource `(resource_type, name)` (its principal, host,
    /// operation and permission aside).
    pub fn names_resource(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            }
    }
}

/// The id of a stored ACL (Kafka's ACL record id, a UUID), chosen by the proposer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AclId(pub u128);

impl fmt::Display for AclId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for AclId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Kafka's checks of an ACL to create (its broker's `validateAclBinding` and controller's
/// `validateNewAcl`); each failure is INVALID_REQUEST for that creation. The enums already rule
/// out ANY, MATCH and UNKNOWN values: the handler refuses those codes before building an [`Acl`].
pub fn validate_new_acl(acl: &Acl) -> Result<(), String> {
    if acl.resource_name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if acl.resource_type == ResourceType::Cluster && acl.resource_name != CLUSTER_RESOURCE_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}"
        ));
    }
    if acl.resource_type == ResourceType::DelegationToken {
        return Err("Delegation tokens are not supported".into());
    }
    if acl.principal.is_empty() {
        return Err("Invalid empty principal specified".into());
    }
    match acl.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "Could not parse principal from `{}` (expected principalType:principalName)",
                acl.principal
            ))
        }
    }
    if acl.host.is_empty() {
        return Err("Invalid empty host specified".into());
    }
    Ok(())
}

/// How a filter matches resource patterns (`PatternType` in a filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type; a given name must equal the ACL's name.
    Any,
    /// Every ACL that would apply to the named resource: LITERAL with the name or `*`, PREFIXED
    /// with a prefix of it.
    Match,
    /// Exactly this pattern type (and name, when given).
    Exactly(PatternType),
}

/// A DescribeAcls/DeleteAcls filter (Kafka's `AclBindingFilter`): `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Matches every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, acl: &Acl) -> bool {
        if self.resource_type.is_some_and(|t| t != acl.resource_type) {
            return false;
        }
        if let PatternFilter::Exactly(p) = self.pattern {
            if p != acl.pattern_type {
                return false;
            }
        }
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, _) => true,
            (Some(name), PatternFilter::Any | PatternFilter::Exactly(_)) => {
                *name == acl.resource_name
            }
            (Some(name), PatternFilter::Match) => match acl.pattern_type {
                PatternType::Literal => *name == acl.resource_name || acl.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(acl.resource_name.as_str()),
            },
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// The broker settings the decision needs (`super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// Principals (`User:name`) allowed everything.
    pub super_users: BTreeSet<String>,
    /// The answer when no ACL names the resource at all.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerSettings {
    /// Parses Kafka's `super.users` value: principals separated by `;`, blanks trimmed.
    pub fn parse_super_users(value: &str) -> BTreeSet<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Who asks: the authenticated principal (`User:name`) and the client's address as Java prints
/// it (`InetAddress.getHostAddress`).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// ACL key within a resource: everything of an [`Acl`] but the resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

/// The ACLs of the image, by id and by resource pattern (the index the decision reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclIndex {
    by_id: BTreeMap<AclId, Acl>,
    by_resource: BTreeMap<(ResourceType, PatternType), BTreeMap<String, BTreeMap<Entry, AclId>>>,
}

/// What one ACL says about one request: nothing (another principal, host or operation), allow
/// or deny.
fn verdict(acl_entry: &Entry, who: &Requester, op: Operation) -> Option<Permission> {
    if acl_entry.principal != who.principal && acl_entry.principal != WILDCARD_PRINCIPAL {
        return None;
    }
    if acl_entry.host != WILDCARD && acl_entry.host != who.host {
        return None;
    }
    let applies = match acl_entry.permission {
        Permission::Allow => acl_entry.operation.allow_grants(op),
        Permission::Deny => acl_entry.operation == Operation::All || acl_entry.operation == op,
    };
    applies.then_some(acl_entry.permission)
}

impl AclIndex {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: AclId) -> Option<&Acl> {
        self.by_id.get(&id)
    }

    /// Every ACL with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (AclId, &Acl)> {
        self.by_id.iter().map(|(id, acl)| (*id, acl))
    }

    /// The id of an ACL equal to `acl`, if one is stored.
    pub fn id_of(&self, acl: &Acl) -> Option<AclId> {
        self.by_resource
            .get(&(acl.resource_type, acl.pattern_type))?
            .get(&acl.resource_name)?
            .get(&entry_of(acl))
            .copied()
    }

    /// The ACLs a filter matches, in id order.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = (AclId, &'a Acl)> {
        self.iter().filter(|(_, acl)| filter.matches(acl))
    }

    /// Stores `acl` under `id`. Panics if either is already stored: the image validates first.
    pub(crate) fn insert(&mut self, id: AclId, acl: Acl) {
        let previous = self
            .by_resource
            .entry((acl.resource_type, acl.pattern_type))
            .or_default()
            .entry(acl.resource_name.clone())
            .or_default()
            .insert(entry_of(&acl), id);
        assert!(previous.is_none(), "ACL {acl:?} stored twice");
        let previous = self.by_id.insert(id, acl);
        assert!(previous.is_none(), "ACL id {id} stored twice");
    }

    /// Removes the ACL `id`, if stored.
    pub(crate) fn remove(&mut self, id: AclId) -> Option<Acl> {
        let acl = self.by_id.remove(&id)?;
        let key = (acl.resource_type, acl.pattern_type);
        let names = self
            .by_resource
            .get_mut(&key)
            .expect("index holds every ACL");
        let entries = names
            .get_mut(&acl.resource_name)
            .expect("index holds every ACL");
        let removed = entries.remove(&entry_of(&acl));
        assert_eq!(removed, Some(id), "ACL index out of sync");
        if entries.is_empty() {
            names.remove(&acl.resource_name);
        }
        if names.is_empty() {
            self.by_resource.remove(&key);
        }
        Some(acl)
    }

    /// The index's own invariants: both maps hold the same ACLs and each is valid.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut indexed = 0;
        for ((t, p), names) in &self.by_resource {
            for (name, entries) in names {
                if entries.is_empty() {
                    return Err(format!("empty ACL index entry for {name}"));
                }
                for (entry, id) in entries {
                    let acl = self
                        .by_id
                        .get(id)
                        .ok_or_else(|| format!("ACL index names missing id {id}"))?;
                    if acl.resource_type != *t
                        || acl.pattern_type != *p
                        || acl.resource_name != *name
                        || entry_of(acl) != *entry
                    {
                        return Err(format!("ACL {id} indexed under the wrong key"));
                    }
                    indexed += 1;
                }
            }
        }
        if indexed != self.by_id.len() {
            return Err("ACL index and ACLs differ in size".into());
        }
        for (id, acl) in &self.by_id {
            validate_new_acl(acl).map_err(|e| format!("ACL {id}: {e}"))?;
        }
        Ok(())
    }

    /// The stored entries of each pattern naming `(resource_type, name)`: the literal name, the
    /// literal wildcard, and every prefixed pattern that is a prefix of the name.
    fn sections<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a BTreeMap<Entry, AclId>> + 'a {
        let literal = self.by_resource.get(&(resource_type, PatternType::Literal));
        let prefixed = self
            .by_resource
            .get(&(resource_type, PatternType::Prefixed));
        let exact = literal.and_then(|m| m.get(name));
        let wildcard = literal.and_then(|m| {
            if name == WILDCARD {
                None
            } else {
                m.get(WILDCARD)
            }
        });
        let prefixes = prefixed.into_iter().flat_map(move |m| {
            name.char_indices()
                .map(|(i, c)| &name[..i + c.len_utf8()])
                .filter_map(move |prefix| m.get(prefix))
        });
        exact.into_iter().chain(wildcard).chain(prefixes)
    }

    /// Kafka's `StandardAuthorizer.authorize` for one action on a LITERAL resource.
    pub fn authorize(
        &self,
        settings: &AuthorizerSettings,
        who: &Requester,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if settings.super_users.contains(who.principal) {
            return true;
        }
        let mut named = false;
        let mut allowed = false;
        for section in self.sections(resource_type, name) {
            for entry in section.keys() {
                named = true;
                match verdict(entry, who, op) {
                    Some(Permission::Deny) => return false,
                    Some(Permission::Allow) => allowed = true,
                    None => {}
                }
            }
        }
        if allowed {
            true
        } else if !named {
            settings.allow_everyone_if_no_acl_found
        } else {
            false
        }
    }

    /// Kafka's `Authorizer.authorizeByResourceType`: may the requester do `op` on at least one
    /// resource of this type (e.g. InitProducerId without a transactional id: WRITE on any
    /// topic)? Allowed when allowed on a resource no ACL names (the probe name Kafka uses), or
    /// when some ALLOW pattern for exactly `op` or ALL is not covered by a DENY (a literal deny
    /// of the same name or a prefixed deny of a prefix; a literal `*` deny denies all).
    pub fn authorize_by_resource_type(
        &self,
        settings: &AuthorizerSettings,
        who: &Requester,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.authorize(settings, who, op, resource_type, "hardcode") {
            return true;
        }
        let mut deny: BTreeMap<PatternType, BTreeSet<&str>> = BTreeMap::new();
        let mut allow: BTreeMap<PatternType, BTreeSet<&str>> = BTreeMap::new();
        let mut wildcard_allow = false;
        for pattern in [PatternType::Literal, PatternType::Prefixed] {
            let Some(names) = self.by_resource.get(&(resource_type, pattern)) else {
                continue;
            };
            for (name, entries) in names {
                for entry in entries.keys() {
                    if entry.host != WILDCARD && entry.host != who.host {
                        continue;
                    }
                    if entry.principal != who.principal && entry.principal != WILDCARD_PRINCIPAL {
                        continue;
                    }
                    if entry.operation != op && entry.operation != Operation::All {
                        continue;
                    }
                    let literal_wildcard = pattern == PatternType::Literal && name == WILDCARD;
                    match entry.permission {
                        Permission::Deny if literal_wildcard => return false,
                        Permission::Deny => {
                            deny.entry(pattern).or_default().insert(name);
                        }
                        Permission::Allow if literal_wildcard => wildcard_allow = true,
                        Permission::Allow => {
                            allow.entry(pattern).or_default().insert(name);
                        }
                    }
                }
            }
        }
        if wildcard_allow {
            return true;
        }
        let empty = BTreeSet::new();
        let deny_literal = deny.get(&PatternType::Literal).unwrap_or(&empty);
        let deny_prefixed = deny.get(&PatternType::Prefixed).unwrap_or(&empty);
        allow.iter().any(|(pattern, names)| {
            names.iter().any(|name| {
                if *pattern == PatternType::Literal && deny_literal.contains(name) {
                    return false;
                }
                !name
                    .char_indices()
                    .any(|(i, c)| deny_prefixed.contains(&name[..i + c.len_utf8()]))
            })
        })
    }

    /// Kafka's `*_authorized_operations` bit field for a resource: bit `code` set for each
    /// operation of the type's supported set the requester is allowed.
    pub fn authorized_operations(
        &self,
        settings: &AuthorizerSettings,
        who: &Requester,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        resource_type
            .supported_operations()
            .iter()
            .filter(|op| self.authorize(settings, who, **op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

fn entry_of(acl: &Acl) -> Entry {
    Entry {
        principal: acl.principal.clone(),
        host: acl.host.clone(),
        operation: acl.operation,
        permission: acl.permission,
    }
}

#[cfg(test)]
mod tests;
