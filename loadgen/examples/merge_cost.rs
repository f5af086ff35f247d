//! What the coordinator's merge costs per report: decode one worker report (every
//! operation's HDR histogram in V2 form, the counters) and add it into the run's
//! figures, as `loadgen coordinator` does for each agent every second. Reports are
//! filled from a seeded spread of latencies like a busy second's (bench/merge_cost.sh).
//!
//!     cargo run --release -p loadgen --example merge_cost [REPORTS] [SAMPLES_PER_OP]

use loadgen::merge::Merge;
use loadgen::stats::{Summary, OPS};
use loadgen::worker::WorkerReport;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let reports: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let samples: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    // A handful of distinct reports, wire-encoded once, decoded and merged each time.
    let wires: Vec<Vec<u8>> = (0..8)
        .map(|_| {
            let mut s = Summary::default();
            for op in OPS {
                for _ in 0..samples {
                    // 50 µs to ~5 s, log-spread: a realistic histogram's spread of buckets.
                    let us = (50.0 * 10f64.powf(rng.random::<f64>() * 5.0)) as u64;
                    s.record(op, us);
                }
            }
            s.connected = 10_000;
            let report = WorkerReport {
                last: false,
                summary: s.to_wire().expect("encodes"),
            };
            postcard::to_stdvec(&report).expect("encodes")
        })
        .collect();
    // Decoding alone (postcard, then each histogram out of its V2 form).
    let start = Instant::now();
    for i in 0..reports {
        let report: WorkerReport = postcard::from_bytes(&wires[(i % 8) as usize]).expect("decodes");
        std::hint::black_box(Summary::from_wire(report.summary).expect("decodes"));
    }
    let decode = start.elapsed();
    let total = Mutex::new(Summary::default());
    let mut merge = Merge::default();
    let start = Instant::now();
    for i in 0..reports {
        let bytes = &wires[(i % 8) as usize];
        let report: WorkerReport = postcard::from_bytes(bytes).expect("decodes");
        merge.add((i % 100, 0), report, &total).expect("merges");
    }
    let took = start.elapsed();
    let bytes = wires.iter().map(Vec::len).sum::<usize>() / wires.len();
    println!(
        "{reports} reports of {} operations x {samples} samples ({bytes} bytes each): {:.1} µs per report decoded and merged ({:.1} µs of it decoding); one core merges {:.0} reports/s",
        OPS.len(),
        took.as_secs_f64() * 1e6 / reports as f64,
        decode.as_secs_f64() * 1e6 / reports as f64,
        reports as f64 / took.as_secs_f64()
    );
}
