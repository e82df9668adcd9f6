//! `chain-sim`: runs many simulator seeds in resumable chunks and prints totals.
//!
//! ```text
//! chain-sim --seeds 10000 [--start 0] [--chunk 500] [--progress chain-sim.progress]
//!           [--mutation none|last-appended-term|no-up-to-date|commit-older-term|ack-before-fsync]
//!           [--fault-ms 20000] [--profile mixed|churn] [--keep-going]
//! chain-sim --controller --seeds 1000 [--mutation fenced-leader-stays|...] [same options]
//! chain-sim --replication --seeds 1000 [--start 0] [--mutation hw-at-log-end|...] [--fault-ms]
//! ```
//! `--controller` runs the metadata plane (image applier, brokers, controller, clients) on the
//! chain; its mutations (`MetaMutation` names) imply it. `--replication` runs partition
//! replication (`josefine_sim::replication`); its mutations (`ReplMutation` names) imply it.
//! After every chunk the totals and the next seed are written to the progress file; running
//! the same command again continues from there. A failing seed is printed with the exact
//! command that replays it.

use std::io::Write;
use std::time::Instant;

use josefine_sim::replication::{run_replication_seed, ReplCounts, ReplMutation, ReplOptions};
use josefine_sim::{run_seed, MetaMutation, Mutation, Profile, RunOptions, Totals};

struct Args {
    seeds: u64,
    start: u64,
    chunk: u64,
    progress: Option<String>,
    mutation: Mutation,
    meta_mutation: MetaMutation,
    repl_mutation: ReplMutation,
    controller: bool,
    replication: bool,
    profile: Profile,
    fault_ms: u64,
    keep_going: bool,
    verbose: bool,
}

fn parse_mutation(s: &str) -> Result<(Mutation, MetaMutation, ReplMutation), String> {
    if let Some(m) = ReplMutation::parse(s).filter(|m| *m != ReplMutation::None) {
        return Ok((Mutation::None, MetaMutation::None, m));
    }
    parse_chain_or_meta_mutation(s).map(|(c, m)| (c, m, ReplMutation::None))
}

fn parse_chain_or_meta_mutation(s: &str) -> Result<(Mutation, MetaMutation), String> {
    let chain = match s {
        "none" => Mutation::None,
        "last-appended-term" => Mutation::VoteOnLastAppendedTerm,
        "no-up-to-date" => Mutation::VoteWithoutUpToDateCheck,
        "commit-older-term" => Mutation::CommitOlderTermByCount,
        "ack-before-fsync" => Mutation::AckBeforeFsync,
        _ => {
            return MetaMutation::parse(s)
                .map(|m| (Mutation::None, m))
                .ok_or(format!("unknown mutation {s}"))
        }
    };
    Ok((chain, MetaMutation::None))
}

fn mutation_name(m: Mutation) -> &'static str {
    match m {
        Mutation::None => "none",
        Mutation::VoteOnLastAppendedTerm => "last-appended-term",
        Mutation::VoteWithoutUpToDateCheck => "no-up-to-date",
        Mutation::CommitOlderTermByCount => "commit-older-term",
        Mutation::AckBeforeFsync => "ack-before-fsync",
    }
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        start: 0,
        chunk: 500,
        progress: None,
        mutation: Mutation::None,
        meta_mutation: MetaMutation::None,
        repl_mutation: ReplMutation::None,
        controller: false,
        replication: false,
        profile: Profile::Mixed,
        fault_ms: RunOptions::new(0).fault_ms,
        keep_going: false,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("bad number {v}: {e}"));
        match flag.as_str() {
            "--seeds" => a.seeds = num(val()?)?,
            "--start" => a.start = num(val()?)?,
            "--chunk" => a.chunk = num(val()?)?.max(1),
            "--progress" => a.progress = Some(val()?),
            "--mutation" => {
                (a.mutation, a.meta_mutation, a.repl_mutation) = parse_mutation(&val()?)?
            }
            "--controller" => a.controller = true,
            "--replication" => a.replication = true,
            "--fault-ms" => a.fault_ms = num(val()?)?,
            "--profile" => {
                a.profile = match val()?.as_str() {
                    "mixed" => Profile::Mixed,
                    "churn" => Profile::LeaderChurn,
                    other => return Err(format!("unknown profile {other}")),
                }
            }
            "--keep-going" => a.keep_going = true,
            "--verbose" => a.verbose = true,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    a.controller |= a.meta_mutation != MetaMutation::None;
    a.replication |= a.repl_mutation != ReplMutation::None;
    Ok(a)
}

impl Args {
    fn mutation_name(&self) -> &'static str {
        match self.meta_mutation {
            MetaMutation::None => mutation_name(self.mutation),
            m => m.name(),
        }
    }
}

/// Progress file: one `key value` per line.
fn load(path: &str, key: &str) -> Option<(u64, Totals, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut t = Totals::default();
    let mut next = None;
    let mut wall = 0.0;
    let mut ok_key = false;
    for line in text.lines() {
        let (k, v) = line.split_once(' ')?;
        match k {
            "key" => ok_key = v == key,
            "next" => next = v.parse().ok(),
            "wall_s" => wall = v.parse().ok()?,
            "seeds" => t.seeds = v.parse().ok()?,
            "sim_time_ms" => t.sim_time_ms = v.parse().ok()?,
            "elections" => t.elections = v.parse().ok()?,
            "blocks_committed" => t.blocks_committed = v.parse().ok()?,
            "dead_blocks_collected" => t.dead_blocks_collected = v.parse().ok()?,
            "crashes" => t.crashes = v.parse().ok()?,
            "snapshots_installed" => t.snapshots_installed = v.parse().ok()?,
            "violations" => t.violations = v.parse().ok()?,
            k if t.meta.fields().iter().any(|(name, _)| *name == k) => {
                t.meta.set(k, v.parse().ok()?)
            }
            "settled_after_heal_ms_max" => t.settled_after_heal_ms_max = v.parse().ok()?,
            "failing_seeds" => {
                t.failing_seeds = v.split(',').filter_map(|s| s.parse().ok()).collect()
            }
            _ => {}
        }
    }
    if !ok_key {
        return None;
    }
    Some((next?, t, wall))
}

fn save(path: &str, key: &str, next: u64, t: &Totals, wall: f64) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let failing: Vec<String> = t.failing_seeds.iter().map(|s| s.to_string()).collect();
    write!(
        f,
        "key {key}\nnext {next}\nwall_s {wall:.1}\nseeds {}\nsim_time_ms {}\nelections {}\n\
         blocks_committed {}\ndead_blocks_collected {}\ncrashes {}\nsnapshots_installed {}\n\
         violations {}\nfailing_seeds {}\n",
        t.seeds,
        t.sim_time_ms,
        t.elections,
        t.blocks_committed,
        t.dead_blocks_collected,
        t.crashes,
        t.snapshots_installed,
        t.violations,
        failing.join(",")
    )?;
    for (name, v) in t.meta.fields() {
        writeln!(f, "{name} {v}")?;
    }
    writeln!(
        f,
        "settled_after_heal_ms_max {}",
        t.settled_after_heal_ms_max
    )?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// `--replication`: the replication simulation, seed after seed, with totals.
fn run_replication(args: &Args) {
    let started = Instant::now();
    let (mut totals, mut violations, mut failing) = (ReplCounts::default(), 0u64, Vec::new());
    let mut sim_time_ms = 0;
    for seed in args.start..args.start + args.seeds {
        let opts = ReplOptions {
            seed,
            mutation: args.repl_mutation,
            fault_ms: args.fault_ms,
        };
        let r = run_replication_seed(opts);
        if args.verbose {
            eprintln!("{r:?}");
        }
        for v in &r.violations {
            println!(
                "VIOLATION seed={seed} {} at {} ms: {}\n  replay: cargo run --release -p josefine-sim --bin chain-sim -- --replication --start {seed} --seeds 1 --mutation {} --fault-ms {}",
                v.property, v.time_ms, v.detail, args.repl_mutation.name(), args.fault_ms
            );
        }
        if !r.violations.is_empty() {
            violations += r.violations.len() as u64;
            failing.push(seed.to_string());
        }
        totals.add(&r.counts);
        sim_time_ms += r.sim_time_ms;
        let done = seed + 1 - args.start;
        if done.is_multiple_of(args.chunk) {
            eprintln!(
                "progress: {done}/{} seeds, {violations} violations, {:.1} s",
                args.seeds,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "seeds {} (from {}), replication, mutation {}, wall {:.1} s\nsimulated time {:.1} s",
        args.seeds,
        args.start,
        args.repl_mutation.name(),
        started.elapsed().as_secs_f64(),
        sim_time_ms as f64 / 1000.0
    );
    for (name, v) in totals.fields() {
        println!("{} {v}", name.replace('_', " "));
    }
    println!("violations {violations}");
    if violations > 0 {
        failing.truncate(20);
        println!("failing seeds: {}", failing.join(","));
        std::process::exit(1);
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chain-sim: {e}");
            std::process::exit(2);
        }
    };
    if args.replication {
        run_replication(&args);
        return;
    }
    let key = format!(
        "start={},seeds={},mutation={},fault_ms={},profile={:?},controller={}",
        args.start,
        args.seeds,
        args.mutation_name(),
        args.fault_ms,
        args.profile,
        args.controller
    );
    let end = args.start + args.seeds;
    let (mut next, mut totals, mut wall_before) = (args.start, Totals::default(), 0.0);
    if let Some(p) = &args.progress {
        if let Some((n, t, w)) = load(p, &key) {
            eprintln!("resuming at seed {n} ({} seeds done)", t.seeds);
            (next, totals, wall_before) = (n, t, w);
        }
    }
    let started = Instant::now();
    while next < end {
        let chunk_end = (next + args.chunk).min(end);
        for seed in next..chunk_end {
            let mut opts = RunOptions::new(seed);
            opts.mutation = args.mutation;
            opts.meta_mutation = args.meta_mutation;
            opts.controller = args.controller;
            opts.fault_ms = args.fault_ms;
            opts.profile = args.profile;
            opts.stop_at_first_violation = true;
            let r = run_seed(opts);
            if args.verbose {
                eprintln!("{r:?}");
            }
            for v in &r.violations {
                println!(
                    "VIOLATION seed={seed} nodes={} {} at {} ms: {}\n  replay: cargo run --release -p josefine-sim --bin chain-sim -- --start {seed} --seeds 1 --mutation {} --fault-ms {} --profile {}{}",
                    r.nodes, v.property, v.time_ms, v.detail, args.mutation_name(), args.fault_ms,
                    if args.profile == Profile::Mixed { "mixed" } else { "churn" },
                    if args.controller { " --controller" } else { "" }
                );
            }
            totals.add(&r);
            if !r.violations.is_empty()
                && !args.keep_going
                && args.mutation == Mutation::None
                && args.meta_mutation == MetaMutation::None
            {
                // Keep counting, but make the failure impossible to miss.
                eprintln!("seed {seed} FAILED");
            }
        }
        next = chunk_end;
        let wall = wall_before + started.elapsed().as_secs_f64();
        if let Some(p) = &args.progress {
            if let Err(e) = save(p, &key, next, &totals, wall) {
                eprintln!("chain-sim: cannot write progress file {p}: {e}");
            }
        }
        eprintln!(
            "progress: {}/{} seeds, {} violations, {:.1} s",
            next - args.start,
            args.seeds,
            totals.violations,
            wall
        );
    }
    let wall = wall_before + started.elapsed().as_secs_f64();
    println!(
        "seeds {} (from {}), mutation {}, wall {:.1} s\nsimulated time {:.1} s\nelections {}\nblocks committed {}\ndead-branch blocks collected {}\ncrashes {}\nsnapshots installed {}\nviolations {}",
        totals.seeds,
        args.start,
        args.mutation_name(),
        wall,
        totals.sim_time_ms as f64 / 1000.0,
        totals.elections,
        totals.blocks_committed,
        totals.dead_blocks_collected,
        totals.crashes,
        totals.snapshots_installed,
        totals.violations
    );
    if args.controller {
        for (name, v) in totals.meta.fields() {
            println!("{} {v}", name.replace('_', " "));
        }
        println!(
            "settled after the heal within {} ms (bound {} ms)",
            totals.settled_after_heal_ms_max,
            josefine_sim::world::SESSION_TIMEOUT_MS
                + josefine_sim::world::ELECTION_TIMEOUT_MAX_MS
                + josefine_sim::world::SETTLE_BOUND_MS
        );
    }
    if totals.violations > 0 {
        let shown: Vec<String> = totals
            .failing_seeds
            .iter()
            .take(20)
            .map(|s| s.to_string())
            .collect();
        println!("failing seeds: {}", shown.join(","));
        std::process::exit(1);
    }
}
