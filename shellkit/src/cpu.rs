//! The process's own CPU time, as the kernel counts it.

use nix::sys::resource::{getrusage, UsageWho};

/// CPU seconds (user and system) this process has used so far; 0 if the kernel does
/// not say.
pub fn process_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_grows_with_work() {
        let before = super::process_seconds();
        let mut x = 0u64;
        // Bounded: a clock that never moves fails the test instead of hanging it.
        for i in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            if i % 4096 == 0 && super::process_seconds() > before {
                break;
            }
        }
        assert!(super::process_seconds() > before);
    }
}
