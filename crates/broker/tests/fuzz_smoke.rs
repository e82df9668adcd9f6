//! CI smoke run of every fuzz target on stable: the same entry points the cargo-fuzz targets
//! call (`josefine::fuzzing`), over the seed inputs, the hand-made seeds and regression
//! reproducers kept in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`, and a few
//! thousand deterministic mutations of them. A few seconds per target; `scripts/fuzz` runs the
//! real fuzzer for longer.
//!
//! A failure names the target, the mutation seed and the input (hex), and writes the input to
//! `$CARGO_TARGET_TMPDIR/fuzz-smoke-<target>.crash` for `cargo +nightly fuzz run <target> FILE`.
//! `JOSEFINE_FUZZ_SMOKE_ITERATIONS` scales the mutation count.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use josefine::fuzzing::Target;

/// xorshift64*: deterministic, so a failing mutation replays from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that tend to sit on a decoder's edges: zero, -1, the sign bits, the maxima.
const INTERESTING_I32: [i32; 8] = [0, 1, -1, 0x7f, 0x80, 0x7fff_ffff, i32::MIN, 0xffff];

/// Applies 1-4 random edits (libFuzzer's classic set) to `input`, splicing from `other`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = INTERESTING_I32[rng.below(INTERESTING_I32.len())];
                input[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            6 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(64));
                input.splice(i..i, other[from..from + n].iter().copied());
            }
            _ if len > 0 => {
                // Varint-ish: a byte with the continuation bit, where lengths live.
                let i = rng.below(len);
                input[i] = 0x80 | rng.next() as u8;
            }
            _ => input.push(rng.next() as u8),
        }
    }
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Files in `fuzz/<kind>/<target>/` (hand-made seeds, regression reproducers).
fn kept_inputs(kind: &str, target: Target) -> Vec<(String, Vec<u8>)> {
    let dir = repo_dir().join("fuzz").join(kind).join(target.name());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (
                name,
                std::fs::read(e.path()).expect("reading a kept fuzz input"),
            )
        })
        .collect();
    files.sort();
    files
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one input, turning a panic into a report that carries the input.
fn run_one(target: Target, scratch: &Path, data: &[u8], what: &str) -> bool {
    match catch_unwind(AssertUnwindSafe(|| target.run(scratch, data))) {
        Ok(accepted) => accepted,
        Err(_) => {
            let crash = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("fuzz-smoke-{}.crash", target.name()));
            let _ = std::fs::write(&crash, data);
            panic!(
                "{} failed on {what}; input written to {} ({} bytes): {}",
                target.name(),
                crash.display(),
                data.len(),
                hex(data)
            );
        }
    }
}

fn iterations(default: usize) -> usize {
    std::env::var("JOSEFINE_FUZZ_SMOKE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|scale| scale * default / 1000)
        .unwrap_or(default)
}

/// Seeds must all be accepted (they are valid inputs: this keeps the seed generators and the
/// decoders in agreement), kept files must not fail, and the mutations must reach both
/// outcomes (a smoke run that only ever saw rejections tested nothing).
/// A tmpfs when the machine has one: the disk targets fsync, which costs milliseconds on a disk
/// and nothing in memory.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("scratch directory")
}

fn smoke(target: Target, mutations: usize) {
    let started = std::time::Instant::now();
    let scratch = scratch_dir();
    let work = scratch.path().join("work");
    let seeds = target.seeds(&scratch.path().join("seeds"));
    assert!(!seeds.is_empty(), "{} has no seeds", target.name());
    for (i, seed) in seeds.iter().enumerate() {
        assert!(
            run_one(target, &work, seed, &format!("seed {i}")),
            "{} rejected its own seed {i}: {}",
            target.name(),
            hex(seed)
        );
    }
    let mut corpus = seeds;
    for kind in ["seeds", "regressions"] {
        for (name, data) in kept_inputs(kind, target) {
            run_one(
                target,
                &work,
                &data,
                &format!("fuzz/{kind}/{}/{name}", target.name()),
            );
            corpus.push(data);
        }
    }
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..mutations {
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (round as u64).wrapping_mul(0x1000_0000_01b3);
        let mut rng = Rng(seed | 1);
        let mut input = corpus[rng.below(corpus.len())].clone();
        let other = &corpus[rng.below(corpus.len())];
        mutate(&mut rng, &mut input, other);
        if run_one(
            target,
            &work,
            &input,
            &format!("mutation round {round} (rng seed {seed:#x})"),
        ) {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    println!(
        "{}: {} corpus inputs, {mutations} mutations: {accepted} accepted, {rejected} rejected, {:.1} s",
        target.name(),
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        accepted > 0 && rejected > 0,
        "{}: accepted {accepted}, rejected {rejected}",
        target.name()
    );
}

#[test]
fn decode_request() {
    smoke(Target::DecodeRequest, iterations(100_000));
}

#[test]
fn record_batch() {
    smoke(Target::RecordBatch, iterations(30_000));
}

#[test]
fn partition_recovery() {
    smoke(Target::PartitionRecovery, iterations(1_500));
}

#[test]
fn meta_commands() {
    smoke(Target::MetaCommands, iterations(5_000));
}

#[test]
fn chain_frame() {
    smoke(Target::ChainFrame, iterations(50_000));
}

/// Writes every target's seeds to `$JOSEFINE_FUZZ_SEEDS_OUT/<target>/` for the cargo-fuzz
/// corpus (`scripts/fuzz` runs this first).
#[test]
#[ignore = "writes files; run by scripts/fuzz"]
fn write_seed_corpus() {
    let out =
        PathBuf::from(std::env::var("JOSEFINE_FUZZ_SEEDS_OUT").expect("JOSEFINE_FUZZ_SEEDS_OUT"));
    let scratch = tempfile::tempdir().expect("scratch directory");
    for target in Target::ALL {
        let dir = out.join(target.name());
        std::fs::create_dir_all(&dir).expect("corpus directory");
        let seeds = target.seeds(scratch.path());
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), seed).expect("writing a seed");
        }
        println!("{}: {} seeds", target.name(), seeds.len());
    }
}

#[test]
fn group_records() {
    smoke(Target::GroupRecords, iterations(50_000));
}

#[test]
fn chain_store() {
    smoke(Target::ChainStore, iterations(1_500));
}

#[test]
fn control_frame() {
    smoke(Target::ControlFrame, iterations(50_000));
}

#[test]
fn txn_records() {
    smoke(Target::TxnRecords, iterations(50_000));
}

#[test]
fn scram_messages() {
    smoke(Target::ScramMessages, iterations(5_000));
}

// ---------------------------------------------------------------------------------------------
// Broker settings: a property across the broker and log crates.

/// Values around every bound the settings use, junk, and Kafka's spellings.
const SETTING_VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "-2",
    "2",
    "1023",
    "1024",
    "1048576",
    "2147483647",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "0.5",
    "1.0",
    "1e6",
    "NaN",
    "inf",
    "true",
    "false",
    "TRUE",
    "delete",
    "compact",
    "compact,delete",
    "producer",
    "gzip",
    "CreateTime",
    "LogAppendTime",
    "x",
    " 7 ",
    "153722867280912",
    "153722867280913",
];

/// Every broker setting the broker accepts (any mix of `--set` values) gives partitions a
/// `LogConfig` the log accepts, and every setting's shown value (Kafka's default included) is
/// accepted again and shows the same: an operator can copy what DescribeConfigs prints.
#[test]
fn accepted_broker_settings_give_log_configs_the_log_accepts() {
    use josefine::config::BrokerSettings;
    use std::collections::BTreeMap;
    let scratch = scratch_dir();
    let log = josefine_log::PartitionLog::open(
        &scratch.path().join("p"),
        [1; 16],
        josefine_log::LogConfig::default(),
        josefine::fuzzing::NOW_MS,
    )
    .expect("open");
    let defaults = BrokerSettings::default();
    for key in BrokerSettings::KEYS {
        let Some(shown) = defaults.value_of(key) else {
            continue;
        };
        let one = BTreeMap::from([(key.to_string(), shown.clone())]);
        let s = BrokerSettings::from_static(one)
            .unwrap_or_else(|e| panic!("default {key}={shown} refused: {e}"));
        assert_eq!(s.value_of(key), Some(shown), "{key} round trip");
    }
    let mut rng = Rng(0x5e77_1235);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3_000 {
        let mut values = BTreeMap::new();
        for _ in 0..1 + rng.below(4) {
            let key = BrokerSettings::KEYS[rng.below(BrokerSettings::KEYS.len())];
            values.insert(
                key.to_string(),
                SETTING_VALUES[rng.below(SETTING_VALUES.len())].to_string(),
            );
        }
        match BrokerSettings::from_static(values.clone()) {
            Ok(s) => {
                accepted += 1;
                log.update_config(s.log_config()).unwrap_or_else(|e| {
                    panic!("round {round}: broker accepted {values:?} but the log refuses: {e}")
                });
                for key in values.keys() {
                    let Some(shown) = s.value_of(key) else {
                        continue;
                    };
                    let again =
                        BrokerSettings::from_static(BTreeMap::from([(key.clone(), shown.clone())]))
                            .unwrap_or_else(|e| {
                                panic!("round {round}: shown {key}={shown} refused: {e}")
                            });
                    assert_eq!(again.value_of(key), Some(shown), "round {round}: {key}");
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 100 && refused > 100,
        "accepted {accepted}, refused {refused}"
    );
}
