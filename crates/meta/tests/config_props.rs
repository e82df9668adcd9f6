//! Property tests of topic and dynamic broker config validation (`josefine_meta::topic_config`,
//! `josefine_meta::broker_config`), through the public API only.
//!
//! Properties: validation never panics on any key or value; every bound in the tables is
//! enforced exactly (the bound itself accepted, one past it refused); every Kafka default is
//! accepted; and accepted values round-trip: a config set that validates is stored by the
//! image exactly as given (CreateTopic, then incremental and full AlterTopicConfigs against a
//! model map), survives the command encoding, and a set that does not validate leaves the image
//! unchanged. Inputs come from a seeded xorshift generator, so a failure names its seed.

use std::collections::BTreeMap;

use josefine_meta::broker_config::{validate_dynamic_broker_config, DYNAMIC_BROKER_CONFIGS};
use josefine_meta::topic_config::{
    list_items, validate_topic_config, validate_topic_configs, validate_value, Kind, TOPIC_CONFIGS,
};
use josefine_meta::{Command, Image, PartitionAssignment, TopicId};

mod common;
use common::Rng;

const ROUNDS: usize = 20_000;

/// Strings that sit on parsers' edges.
const TRICKY_VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "-0",
    "+0",
    "+5",
    "-1",
    "-2",
    "1",
    "00",
    "0x10",
    "1e3",
    "1.0",
    "0.5",
    ".5",
    "1.",
    "-0.0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "1e308",
    "1e309",
    "-1e309",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "2147483647",
    "2147483648",
    "99999999999999999999999",
    "true",
    "TRUE",
    "False",
    "yes",
    "delete",
    "compact",
    "compact,delete",
    "delete,compact",
    ",",
    ",,delete,",
    "compact, delete",
    "compact,,",
    "delete,foo",
    "producer",
    "gzip",
    "zstd",
    "uncompressed",
    "CreateTime",
    "createtime",
    "LogAppendTime",
    "\u{0}",
    "\u{feff}1",
    "１",
    "1\n",
    "\t7\t",
    "é",
    "💥",
];

/// A random value: tricky strings, numbers around every table bound, junk, or a mix.
fn random_value(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 | 1 => rng.pick(TRICKY_VALUES).to_string(),
        2 => {
            let bounds: Vec<i64> = TOPIC_CONFIGS
                .iter()
                .filter_map(|d| match d.kind {
                    Kind::Integer(min, max) => Some([min, max]),
                    _ => None,
                })
                .flatten()
                .collect();
            let b = *rng.pick(&bounds);
            let delta = [-2i64, -1, 0, 1, 2][rng.below(5)];
            match b.checked_add(delta) {
                Some(v) => v.to_string(),
                None => format!("{}{}", b, rng.below(10)),
            }
        }
        3 => (rng.next() as i64 >> rng.below(64)).to_string(),
        4 => format!("{}", (rng.next() % 2_000_001) as f64 / 1_000_000.0 - 0.5),
        _ => (0..rng.below(12))
            .map(|_| char::from_u32(32 + rng.below(95) as u32).unwrap_or('?'))
            .collect(),
    }
}

/// A known key, a near miss of one, or junk.
fn random_key(rng: &mut Rng) -> String {
    let known = rng.pick(TOPIC_CONFIGS).name;
    match rng.below(5) {
        0..=2 => known.to_string(),
        3 => {
            let mut k = known.to_string();
            let i = rng.below(k.len());
            k.replace_range(i..i + 1, if rng.chance(2) { "X" } else { "" });
            k
        }
        _ => rng.pick(DYNAMIC_BROKER_CONFIGS).name.to_string(),
    }
}

/// A value the table accepts for `kind`, chosen at random (bounds included).
fn accepted_value(rng: &mut Rng, kind: Kind) -> String {
    let v = match kind {
        Kind::Integer(min, max) => match rng.below(4) {
            0 => min,
            1 => max,
            _ => min
                .saturating_add((rng.next() % (max.abs_diff(min).max(1))) as i64)
                .min(max),
        }
        .to_string(),
        Kind::Double(min, max) => {
            let x = min + (max - min) * ((rng.next() % 1001) as f64 / 1000.0);
            format!("{x}")
        }
        Kind::Bool => rng.pick(&["true", "false", "TRUE", "False"]).to_string(),
        Kind::OneOf(allowed) => rng.pick(allowed).to_string(),
        Kind::ListOf(allowed) => {
            let mut items: Vec<&str> = allowed.iter().copied().filter(|_| rng.chance(2)).collect();
            if items.is_empty() {
                items.push(*rng.pick(allowed));
            }
            if rng.chance(2) {
                items.reverse();
            }
            items.join(if rng.chance(2) { "," } else { ", " })
        }
        Kind::Any => "any".to_string(),
        Kind::IntegerOr(min, max, extra) => match rng.below(3) {
            0 => extra,
            1 => min,
            _ => max,
        }
        .to_string(),
    };
    // Kafka trims values; so must we.
    if rng.chance(8) {
        format!(" {v} ")
    } else {
        v
    }
}

#[test]
fn validation_never_panics_and_errors_name_the_key() {
    let mut rng = Rng(0x5eed_c0f1_6000_0001);
    let mut accepted = 0;
    for round in 0..ROUNDS {
        let key = random_key(&mut rng);
        let value = random_value(&mut rng);
        match validate_topic_config(&key, &value) {
            Ok(()) => {
                accepted += 1;
                assert!(
                    TOPIC_CONFIGS.iter().any(|d| d.name == key),
                    "round {round}: unknown key {key:?} accepted"
                );
            }
            Err(e) => assert!(
                e.contains(&key),
                "round {round}: {e:?} does not name {key:?}"
            ),
        }
        if let Err(e) = validate_dynamic_broker_config(&key, &value) {
            assert!(
                e.contains(&key),
                "round {round}: {e:?} does not name {key:?}"
            );
        }
        let set: Vec<(String, String)> = (0..rng.below(6))
            .map(|_| (random_key(&mut rng), random_value(&mut rng)))
            .collect();
        let _ = validate_topic_configs(set.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    // The generator reaches both outcomes, or the test proves nothing.
    assert!(
        accepted > ROUNDS / 20 && accepted < ROUNDS,
        "accepted {accepted}"
    );
}

#[test]
fn bounds_are_enforced_exactly() {
    let mut rng = Rng(0x5eed_c0f1_6000_0002);
    let kinds = TOPIC_CONFIGS
        .iter()
        .map(|d| (d.name, d.kind))
        .chain(DYNAMIC_BROKER_CONFIGS.iter().map(|d| (d.name, d.kind)));
    for (name, kind) in kinds {
        let ok = |v: &str| validate_value(name, kind, v).is_ok();
        match kind {
            Kind::Integer(min, max) => {
                assert!(
                    ok(&min.to_string()) && ok(&max.to_string()),
                    "{name} bounds"
                );
                if let Some(below) = min.checked_sub(1) {
                    assert!(!ok(&below.to_string()), "{name}: {below} < {min} accepted");
                } else {
                    assert!(
                        !ok("-9223372036854775809"),
                        "{name}: below i64::MIN accepted"
                    );
                }
                if let Some(above) = max.checked_add(1) {
                    assert!(!ok(&above.to_string()), "{name}: {above} > {max} accepted");
                } else {
                    assert!(
                        !ok("9223372036854775808"),
                        "{name}: above i64::MAX accepted"
                    );
                }
                for _ in 0..200 {
                    let x = rng.next() as i64 >> rng.below(64);
                    assert_eq!(ok(&x.to_string()), (min..=max).contains(&x), "{name}: {x}");
                }
                assert!(!ok("1.5") && !ok("") && !ok("ten"), "{name} takes junk");
            }
            Kind::Double(min, max) => {
                assert!(
                    ok(&format!("{min}")) && ok(&format!("{max}")),
                    "{name} bounds"
                );
                // A relative step, so that it still moves a bound as large as f64::MAX (to inf).
                let step = |x: f64| 1e-9_f64.max(x.abs() * 1e-9);
                assert!(!ok(&format!("{}", min - step(min))), "{name} below {min}");
                assert!(!ok(&format!("{}", max + step(max))), "{name} above {max}");
                for junk in ["NaN", "inf", "-inf", "", "half"] {
                    assert!(!ok(junk), "{name} accepts {junk:?}");
                }
                for _ in 0..200 {
                    let x = (rng.next() % 4001) as f64 / 1000.0 - 2.0;
                    assert_eq!(ok(&format!("{x}")), x >= min && x <= max, "{name}: {x}");
                }
            }
            Kind::Bool => {
                for v in ["true", "false", "TRUE", "False"] {
                    assert!(ok(v), "{name} refuses {v}");
                }
                for v in ["yes", "1", "", "t"] {
                    assert!(!ok(v), "{name} accepts {v}");
                }
            }
            Kind::OneOf(allowed) => {
                for v in allowed {
                    assert!(ok(v), "{name} refuses {v}");
                    assert!(!ok(&format!("{v}x")), "{name} accepts {v}x");
                }
                assert!(!ok(""), "{name} accepts empty");
            }
            Kind::ListOf(allowed) => {
                for v in allowed {
                    assert!(ok(v), "{name} refuses {v}");
                }
                assert!(
                    ok(&allowed.join(",")) && ok(&allowed.join(" , ")),
                    "{name} lists"
                );
                assert!(!ok("") && !ok(","), "{name} accepts an empty list");
                assert!(
                    !ok(&format!("{},bogus", allowed[0])),
                    "{name} accepts bogus"
                );
                // Whatever is accepted splits into allowed items only.
                for _ in 0..200 {
                    let v = random_value(&mut rng);
                    if ok(&v) {
                        assert!(list_items(&v).iter().all(|i| allowed.contains(i)), "{v:?}");
                    }
                }
            }
            Kind::Any => assert!(ok("") && ok("x"), "{name}"),
            Kind::IntegerOr(min, max, extra) => {
                for v in [min, max, extra] {
                    assert!(ok(&v.to_string()), "{name} refuses {v}");
                }
                for _ in 0..200 {
                    let x = rng.next() as i64 >> rng.below(64);
                    let want = x == extra || (min..=max).contains(&x);
                    assert_eq!(ok(&x.to_string()), want, "{name}: {x}");
                }
                assert!(
                    !ok(&(max + 1).to_string()) && !ok("ten"),
                    "{name} takes junk"
                );
            }
        }
    }
}

#[test]
fn every_kafka_default_is_accepted() {
    let mut defaults = Vec::new();
    for d in TOPIC_CONFIGS {
        // An empty default is Kafka's null (no default): nothing to accept.
        if d.kafka_default.is_empty() {
            continue;
        }
        validate_topic_config(d.name, d.kafka_default).unwrap_or_else(|e| {
            panic!(
                "Kafka's default {}={} refused: {e}",
                d.name, d.kafka_default
            )
        });
        defaults.push((d.name, d.kafka_default));
    }
    assert!(
        defaults.len() > TOPIC_CONFIGS.len() / 2,
        "most configs have a default"
    );
    validate_topic_configs(defaults.iter().copied()).expect("all defaults together");
    // The same value for the dynamic broker config a topic config defaults from.
    for d in TOPIC_CONFIGS.iter().filter(|d| !d.kafka_default.is_empty()) {
        let Some(broker_key) = d.broker_synonym else {
            continue;
        };
        if DYNAMIC_BROKER_CONFIGS.iter().any(|b| b.name == broker_key) {
            validate_dynamic_broker_config(broker_key, d.kafka_default).unwrap_or_else(|e| {
                panic!(
                    "Kafka's default {broker_key}={} refused: {e}",
                    d.kafka_default
                )
            });
        }
    }
}

/// A random set of distinct, individually valid topic configs.
fn accepted_set(rng: &mut Rng) -> Vec<(String, String)> {
    let mut set: Vec<(String, String)> = Vec::new();
    for _ in 0..rng.below(6) {
        let d = rng.pick(TOPIC_CONFIGS);
        if set.iter().any(|(k, _)| k == d.name) {
            continue;
        }
        set.push((d.name.to_string(), accepted_value(rng, d.kind)));
    }
    set
}

fn topic_configs(image: &Image, id: TopicId) -> BTreeMap<String, String> {
    image.topics.get(&id).expect("topic exists").configs.clone()
}

#[test]
fn accepted_values_round_trip_through_commands_and_the_image() {
    let mut rng = Rng(0x5eed_c0f1_6000_0003);
    let mut image = Image::default();
    image
        .apply(&Command::RegisterBroker {
            node_id: 1,
            incarnation_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        })
        .expect("register");
    image
        .apply(&Command::UnfenceBroker {
            node_id: 1,
            epoch: 0,
        })
        .expect("unfence");
    let (mut stored, mut refused) = (0, 0);
    for round in 0..2_000u32 {
        let id = TopicId({
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&round.to_be_bytes());
            b[15] = 1;
            b
        });
        let create = Command::CreateTopic {
            topic_id: id,
            name: format!("t{round}"),
            partitions: vec![PartitionAssignment::led_by_first(0, vec![1])],
            configs: accepted_set(&mut rng),
        };
        assert_eq!(Command::decode(&create.encode()).expect("decode"), create);
        let valid = match &create {
            Command::CreateTopic { configs, .. } => {
                validate_topic_configs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .is_ok()
            }
            _ => unreachable!(),
        };
        if image.apply(&create).is_err() {
            // Only a cross-config rule (min/max compaction lag) may refuse individually
            // valid values, and then the set as a whole does not validate either.
            assert!(!valid, "round {round}: valid set refused: {create:?}");
            assert!(!image.topics.contains_key(&id));
            refused += 1;
            continue;
        }
        let Command::CreateTopic { configs, .. } = &create else {
            unreachable!()
        };
        let mut model: BTreeMap<String, String> = configs.iter().cloned().collect();
        assert_eq!(
            topic_configs(&image, id),
            model,
            "round {round}: stored as given"
        );
        // A few alters against the model.
        for _ in 0..3 {
            let replace_all = rng.chance(4);
            let set = accepted_set(&mut rng);
            let delete: Vec<String> = model
                .keys()
                .filter(|k| !set.iter().any(|(s, _)| s == *k) && rng.chance(3))
                .cloned()
                .collect();
            let mut next = if replace_all {
                BTreeMap::new()
            } else {
                model.clone()
            };
            for k in &delete {
                next.remove(k);
            }
            next.extend(set.iter().cloned());
            let alter = Command::AlterTopicConfigs {
                topic_id: id,
                replace_all,
                set,
                delete,
            };
            assert_eq!(Command::decode(&alter.encode()).expect("decode"), alter);
            let next_valid =
                validate_topic_configs(next.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_ok();
            match image.apply(&alter) {
                Ok(_) => {
                    assert!(next_valid, "round {round}: invalid result stored: {next:?}");
                    model = next;
                    stored += 1;
                }
                Err(_) => {
                    assert!(!next_valid, "round {round}: valid alter refused: {alter:?}");
                    refused += 1;
                }
            }
            assert_eq!(
                topic_configs(&image, id),
                model,
                "round {round}: image follows the model"
            );
        }
        // An invalid value never gets in, and leaves the image as it was.
        let d = rng.pick(TOPIC_CONFIGS);
        let bad = ["not-a-value", "-99999999999999999999", "", "gzip"][rng.below(4)];
        if validate_topic_config(d.name, bad).is_err() {
            let before = topic_configs(&image, id);
            let alter = Command::AlterTopicConfigs {
                topic_id: id,
                replace_all: false,
                set: vec![(d.name.to_string(), bad.to_string())],
                delete: vec![],
            };
            assert!(
                image.apply(&alter).is_err(),
                "round {round}: {}={bad:?} stored",
                d.name
            );
            assert_eq!(topic_configs(&image, id), before);
        }
    }
    assert!(
        stored > 1000 && refused > 0,
        "stored {stored}, refused {refused}"
    );
}
