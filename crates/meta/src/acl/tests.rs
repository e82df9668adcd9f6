//! Unit tests of the ACL model and decision, and a randomized comparison of the indexed decision
//! with a direct reading of the rules over every ACL.

use super::*;

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    host: &str,
    operation: Operation,
    permission: Permission,
) -> Acl {
    Acl {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: host.into(),
        operation,
        permission,
    }
}

fn topic(name: &str, pattern: PatternType, principal: &str, op: Operation, p: Permission) -> Acl {
    acl(ResourceType::Topic, name, pattern, principal, "*", op, p)
}

fn index(acls: &[Acl]) -> AclIndex {
    let mut index = AclIndex::default();
    for (i, a) in acls.iter().enumerate() {
        index.insert(AclId(i as u128 + 1), a.clone());
    }
    index.check_consistency().unwrap();
    index
}

fn settings(allow_if_none: bool, supers: &[&str]) -> AuthorizerSettings {
    AuthorizerSettings {
        super_users: supers.iter().map(|s| s.to_string()).collect(),
        allow_everyone_if_no_acl_found: allow_if_none,
    }
}

const ALICE: Requester = Requester {
    principal: "User:alice",
    host: "10.0.0.1",
};
const BOB: Requester = Requester {
    principal: "User:bob",
    host: "10.0.0.2",
};

use Operation::*;
use PatternType::*;
use Permission::*;

fn can(index: &AclIndex, s: &AuthorizerSettings, who: &Requester, op: Operation, t: &str) -> bool {
    index.authorize(s, who, op, ResourceType::Topic, t)
}

#[test]
fn super_users_are_allowed_despite_deny() {
    let idx = index(&[topic("t", Literal, "User:alice", All, Deny)]);
    let s = settings(false, &["User:alice", "User:admin"]);
    assert!(can(&idx, &s, &ALICE, Write, "t"));
    assert!(!can(&idx, &s, &BOB, Write, "t"));
    assert_eq!(
        AuthorizerSettings::parse_super_users(" User:a ;User:b;; "),
        ["User:a", "User:b"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn no_acl_on_the_resource_follows_allow_everyone() {
    let empty = AclIndex::default();
    assert!(can(&empty, &settings(true, &[]), &ALICE, Read, "t"));
    assert!(!can(&empty, &settings(false, &[]), &ALICE, Read, "t"));
    // An ACL for someone else names the resource: no longer "no ACL found".
    let idx = index(&[topic("t", Literal, "User:bob", Read, Allow)]);
    assert!(!can(&idx, &settings(true, &[]), &ALICE, Read, "t"));
    assert!(can(&idx, &settings(true, &[]), &ALICE, Read, "u"));
    // ACLs on another resource type do not name a topic.
    let idx = index(&[acl(
        ResourceType::Group,
        "t",
        Literal,
        "User:bob",
        "*",
        Read,
        Allow,
    )]);
    assert!(can(&idx, &settings(true, &[]), &ALICE, Read, "t"));
}

#[test]
fn deny_wins_over_allow_from_any_pattern() {
    let s = settings(false, &[]);
    for deny in [
        topic("orders", Literal, "User:alice", Write, Deny),
        topic("*", Literal, "User:alice", Write, Deny),
        topic("ord", Prefixed, "User:alice", Write, Deny),
        topic("orders", Literal, "User:*", All, Deny),
    ] {
        let idx = index(&[
            topic("orders", Literal, "User:alice", Write, Allow),
            deny.clone(),
        ]);
        assert!(!can(&idx, &s, &ALICE, Write, "orders"), "{deny:?}");
        let idx = index(&[topic("*", Literal, "User:*", All, Allow), deny.clone()]);
        assert!(!can(&idx, &s, &ALICE, Write, "orders"), "{deny:?}");
    }
}

#[test]
fn implied_operations_apply_to_allow_only() {
    let s = settings(false, &[]);
    for op in [Read, Write, Delete, Alter, Describe, All] {
        let idx = index(&[topic("t", Literal, "User:alice", op, Allow)]);
        assert!(can(&idx, &s, &ALICE, Describe, "t"), "{op:?}");
    }
    for op in [Create, AlterConfigs, DescribeConfigs, ClusterAction] {
        let idx = index(&[topic("t", Literal, "User:alice", op, Allow)]);
        assert!(!can(&idx, &s, &ALICE, Describe, "t"), "{op:?}");
    }
    let idx = index(&[topic("t", Literal, "User:alice", AlterConfigs, Allow)]);
    assert!(can(&idx, &s, &ALICE, DescribeConfigs, "t"));
    assert!(!can(&idx, &s, &ALICE, Describe, "t"));
    // Nothing implies READ or WRITE.
    let idx = index(&[topic("t", Literal, "User:alice", Write, Allow)]);
    assert!(!can(&idx, &s, &ALICE, Read, "t"));
    let idx = index(&[topic("t", Literal, "User:alice", Describe, Allow)]);
    assert!(!can(&idx, &s, &ALICE, Read, "t"));
    // A DENY of READ does not deny DESCRIBE; a DENY of ALL does.
    let idx = index(&[
        topic("t", Literal, "User:alice", Describe, Allow),
        topic("t", Literal, "User:alice", Read, Deny),
    ]);
    assert!(can(&idx, &s, &ALICE, Describe, "t"));
    assert!(!can(&idx, &s, &ALICE, Read, "t"));
    let idx = index(&[
        topic("t", Literal, "User:alice", Describe, Allow),
        topic("t", Literal, "User:alice", All, Deny),
    ]);
    assert!(!can(&idx, &s, &ALICE, Describe, "t"));
}

#[test]
fn patterns_literal_wildcard_and_prefixed() {
    let s = settings(false, &[]);
    let idx = index(&[topic("foo", Prefixed, "User:alice", Read, Allow)]);
    assert!(can(&idx, &s, &ALICE, Read, "foo"));
    assert!(can(&idx, &s, &ALICE, Read, "foobar"));
    assert!(!can(&idx, &s, &ALICE, Read, "fo"));
    assert!(!can(&idx, &s, &ALICE, Read, "barfoo"));
    let idx = index(&[topic("foo", Literal, "User:alice", Read, Allow)]);
    assert!(can(&idx, &s, &ALICE, Read, "foo"));
    assert!(!can(&idx, &s, &ALICE, Read, "foobar"));
    let idx = index(&[topic("*", Literal, "User:alice", Read, Allow)]);
    assert!(can(&idx, &s, &ALICE, Read, "anything"));
    // A PREFIXED "*" is a prefix, not a wildcard.
    let idx = index(&[topic("*", Prefixed, "User:alice", Read, Allow)]);
    assert!(!can(&idx, &s, &ALICE, Read, "anything"));
    assert!(can(&idx, &s, &ALICE, Read, "*x"));
    // Multi-byte names match by character prefix.
    let idx = index(&[topic("é", Prefixed, "User:alice", Read, Allow)]);
    assert!(can(&idx, &s, &ALICE, Read, "éa"));
}

#[test]
fn principals_and_hosts() {
    let s = settings(false, &[]);
    let idx = index(&[topic("t", Literal, "User:*", Read, Allow)]);
    assert!(can(&idx, &s, &ALICE, Read, "t"));
    assert!(can(&idx, &s, &BOB, Read, "t"));
    let idx = index(&[acl(
        ResourceType::Topic,
        "t",
        Literal,
        "User:alice",
        "10.0.0.1",
        Read,
        Allow,
    )]);
    assert!(can(&idx, &s, &ALICE, Read, "t"));
    let elsewhere = Requester {
        principal: "User:alice",
        host: "10.0.0.9",
    };
    assert!(!can(&idx, &s, &elsewhere, Read, "t"));
    // Principal names are exact (case-sensitive, type included).
    let idx = index(&[topic("t", Literal, "User:Alice", Read, Allow)]);
    assert!(!can(&idx, &s, &ALICE, Read, "t"));
    let idx = index(&[topic("t", Literal, "Group:alice", Read, Allow)]);
    assert!(!can(&idx, &s, &ALICE, Read, "t"));
}

#[test]
fn authorized_operations_bits() {
    let s = settings(false, &[]);
    let idx = index(&[topic("t", Literal, "User:alice", Write, Allow)]);
    let bits = idx.authorized_operations(&s, &ALICE, ResourceType::Topic, "t");
    assert_eq!(bits, (1 << Write.code()) | (1 << Describe.code()));
    let idx = index(&[acl(
        ResourceType::Cluster,
        CLUSTER_RESOURCE_NAME,
        Literal,
        "User:alice",
        "*",
        All,
        Allow,
    )]);
    let bits = idx.authorized_operations(&s, &ALICE, ResourceType::Cluster, CLUSTER_RESOURCE_NAME);
    let expected = ResourceType::Cluster
        .supported_operations()
        .iter()
        .fold(0, |b, o| b | (1 << o.code()));
    assert_eq!(bits, expected);
    assert_eq!(
        bits & (1 << Read.code()),
        0,
        "READ is not a cluster operation"
    );
}

#[test]
fn by_resource_type_follows_kafka() {
    let s = settings(false, &[]);
    let by_type = |idx: &AclIndex, who: &Requester| {
        idx.authorize_by_resource_type(&s, who, Write, ResourceType::Topic)
    };
    assert!(!by_type(&AclIndex::default(), &ALICE));
    assert!(AclIndex::default().authorize_by_resource_type(
        &settings(true, &[]),
        &ALICE,
        Write,
        ResourceType::Topic
    ));
    let idx = index(&[topic("a", Literal, "User:alice", Write, Allow)]);
    assert!(by_type(&idx, &ALICE));
    assert!(!by_type(&idx, &BOB));
    // READ does not count for WRITE; ALL does.
    assert!(!by_type(
        &index(&[topic("a", Literal, "User:alice", Read, Allow)]),
        &ALICE
    ));
    assert!(by_type(
        &index(&[topic("a", Prefixed, "User:*", All, Allow)]),
        &ALICE
    ));
    // The allowed pattern denied by a literal of the same name or a shorter prefix.
    let idx = index(&[
        topic("abc", Literal, "User:alice", Write, Allow),
        topic("ab", Prefixed, "User:alice", Write, Deny),
    ]);
    assert!(!by_type(&idx, &ALICE));
    let idx = index(&[
        topic("abc", Prefixed, "User:alice", Write, Allow),
        topic("abc", Literal, "User:alice", Write, Deny),
    ]);
    assert!(
        by_type(&idx, &ALICE),
        "a literal deny does not cover a prefix"
    );
    let idx = index(&[
        topic("abc", Literal, "User:alice", Write, Allow),
        topic("*", Literal, "User:alice", Write, Deny),
    ]);
    assert!(!by_type(&idx, &ALICE));
    // Super users always.
    assert!(idx.authorize_by_resource_type(
        &settings(false, &["User:alice"]),
        &ALICE,
        Write,
        ResourceType::Topic
    ));
}

#[test]
fn filters_match_as_kafka() {
    let lit = topic("foo", Literal, "User:alice", Read, Allow);
    let pre = topic("fo", Prefixed, "User:alice", Read, Allow);
    let wild = topic("*", Literal, "User:bob", Write, Deny);
    let group = acl(
        ResourceType::Group,
        "foo",
        Literal,
        "User:alice",
        "*",
        Read,
        Allow,
    );
    let all = [&lit, &pre, &wild, &group];
    let hits =
        |f: &AclFilter| -> Vec<&Acl> { all.iter().copied().filter(|a| f.matches(a)).collect() };
    let mut f = AclFilter::any();
    assert_eq!(hits(&f).len(), 4);
    f.resource_type = Some(ResourceType::Topic);
    f.resource_name = Some("foo".into());
    assert_eq!(hits(&f), vec![&lit], "ANY: exact name only");
    f.pattern = PatternFilter::Match;
    assert_eq!(
        hits(&f),
        vec![&lit, &pre, &wild],
        "MATCH: what applies to foo"
    );
    f.resource_name = Some("foobar".into());
    assert_eq!(hits(&f), vec![&pre, &wild]);
    f.pattern = PatternFilter::Exactly(Prefixed);
    assert_eq!(hits(&f), Vec::<&Acl>::new());
    f.resource_name = Some("fo".into());
    assert_eq!(hits(&f), vec![&pre]);
    let mut f = AclFilter::any();
    f.permission = Some(Deny);
    assert_eq!(hits(&f), vec![&wild]);
    f.permission = None;
    f.principal = Some("User:alice".into());
    f.operation = Some(Read);
    f.host = Some("*".into());
    assert_eq!(hits(&f), vec![&lit, &pre, &group]);
}

#[test]
fn new_acls_are_validated_as_kafka() {
    let good = topic("t", Literal, "User:alice", Read, Allow);
    assert!(validate_new_acl(&good).is_ok());
    let bad = |f: &dyn Fn(&mut Acl)| {
        let mut a = good.clone();
        f(&mut a);
        validate_new_acl(&a).unwrap_err()
    };
    assert!(bad(&|a| a.resource_name.clear()).contains("empty"));
    assert!(bad(&|a| a.principal.clear()).contains("principal"));
    assert!(bad(&|a| a.principal = "alice".into()).contains("principal"));
    assert!(bad(&|a| a.principal = "User:".into()).contains("principal"));
    assert!(bad(&|a| a.host.clear()).contains("host"));
    assert!(bad(&|a| {
        a.resource_type = ResourceType::Cluster;
        a.resource_name = "other".into();
    })
    .contains("kafka-cluster"));
    let mut cluster = good.clone();
    cluster.resource_type = ResourceType::Cluster;
    cluster.resource_name = CLUSTER_RESOURCE_NAME.into();
    assert!(validate_new_acl(&cluster).is_ok());
    for code in [0, 1] {
        assert_eq!(ResourceType::from_code(code), None);
        assert_eq!(Operation::from_code(code), None);
    }
    for code in [0, 1, 2] {
        assert_eq!(PatternType::from_code(code), None);
    }
    assert_eq!(Permission::from_code(1), None);
    for op in Operation::ALL_OPS {
        assert_eq!(Operation::from_code(op.code()), Some(op));
    }
}

#[test]
fn remove_keeps_the_index_exact() {
    let acls = [
        topic("a", Literal, "User:alice", Read, Allow),
        topic("a", Literal, "User:bob", Read, Allow),
        topic("a", Prefixed, "User:bob", Read, Allow),
    ];
    let mut idx = index(&acls);
    assert_eq!(idx.id_of(&acls[1]), Some(AclId(2)));
    assert_eq!(idx.remove(AclId(2)), Some(acls[1].clone()));
    assert_eq!(idx.remove(AclId(2)), None);
    idx.check_consistency().unwrap();
    assert_eq!(idx.id_of(&acls[1]), None);
    idx.remove(AclId(1));
    idx.remove(AclId(3));
    assert_eq!(idx, AclIndex::default(), "emptied index equals a fresh one");
}

/// A small deterministic generator (xorshift): the crate has no randomness dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const NAMES: [&str; 7] = ["a", "ab", "abc", "b", "ba", "*", "abd"];
const PRINCIPALS: [&str; 3] = ["User:alice", "User:bob", "User:*"];
const HOSTS: [&str; 3] = ["10.0.0.1", "10.0.0.2", "*"];
const TYPES: [ResourceType; 2] = [ResourceType::Topic, ResourceType::Group];

fn random_acl(rng: &mut Rng) -> Acl {
    Acl {
        resource_type: *rng.pick(&TYPES),
        resource_name: rng.pick(&NAMES).to_string(),
        pattern_type: *rng.pick(&[Literal, Prefixed]),
        principal: rng.pick(&PRINCIPALS).to_string(),
        host: rng.pick(&HOSTS).to_string(),
        operation: *rng.pick(&Operation::ALL_OPS),
        permission: *rng.pick(&[Allow, Deny]),
    }
}

/// The rules read directly, over every ACL, without the index.
fn reference(
    acls: &[&Acl],
    s: &AuthorizerSettings,
    who: &Requester,
    op: Operation,
    t: ResourceType,
    name: &str,
) -> bool {
    if s.super_users.contains(who.principal) {
        return true;
    }
    let naming: Vec<&&Acl> = acls.iter().filter(|a| a.names_resource(t, name)).collect();
    let applies = |a: &Acl| {
        (a.principal == who.principal || a.principal == "User:*")
            && (a.host == "*" || a.host == who.host)
    };
    if naming
        .iter()
        .any(|a| applies(a) && a.permission == Deny && (a.operation == op || a.operation == All))
    {
        return false;
    }
    let implied = |granted: Operation| {
        granted == op
            || granted == All
            || (op == Describe && matches!(granted, Read | Write | Delete | Alter))
            || (op == DescribeConfigs && granted == AlterConfigs)
    };
    if naming
        .iter()
        .any(|a| applies(a) && a.permission == Allow && implied(a.operation))
    {
        return true;
    }
    naming.is_empty() && s.allow_everyone_if_no_acl_found
}

#[test]
fn random_acl_sets_decide_as_the_rules_read() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let requesters = [
        ALICE,
        BOB,
        Requester {
            principal: "User:carol",
            host: "10.0.0.1",
        },
    ];
    for round in 0..400u32 {
        let mut idx = AclIndex::default();
        let mut next_id = 1u128;
        for _ in 0..(rng.next() % 12) {
            let a = random_acl(&mut rng);
            if idx.id_of(&a).is_none() {
                idx.insert(AclId(next_id), a);
                next_id += 1;
            }
        }
        // Remove a few, so removal is exercised too.
        for _ in 0..(rng.next() % 3) {
            let id = AclId(1 + (rng.next() % next_id as u64) as u128);
            idx.remove(id);
        }
        idx.check_consistency().unwrap();
        let acls: Vec<&Acl> = idx.iter().map(|(_, a)| a).collect();
        let s = settings(
            rng.next().is_multiple_of(2),
            if round.is_multiple_of(7) {
                &["User:bob"]
            } else {
                &[]
            },
        );
        for who in &requesters {
            for t in TYPES {
                for name in ["a", "ab", "abc", "abd", "b", "c", "*"] {
                    for op in Operation::ALL_OPS {
                        assert_eq!(
                            idx.authorize(&s, who, op, t, name),
                            reference(&acls, &s, who, op, t, name),
                            "round {round}: {who:?} {op:?} {t:?} {name} over {acls:#?}"
                        );
                    }
                }
            }
        }
    }
}
