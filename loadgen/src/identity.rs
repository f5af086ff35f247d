//! Which run a report is: when it started, which build ran it, with which seed,
//! profile and command line, on which machine. Carried in the summary, the JSON, the
//! HTML report and `/metrics` (`loadgen_run_info`), so that runs can be told apart and
//! tracked over time.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cores: u32,
    pub memory_bytes: u64,
    /// Open files one process may hold (the limit raised to its hard maximum).
    pub open_files: u64,
    /// `uname -r`.
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    /// A random id, also the `run_id` label of `loadgen_run_info`.
    pub run_id: String,
    /// UTC, RFC 3339, when the run began.
    pub started_at: String,
    pub version: String,
    /// The commit the binary was built from (`-dirty` with uncommitted changes).
    pub commit: String,
    /// The command line, as given.
    pub command_line: Vec<String>,
    pub seed: u64,
    /// The profile's file and the effective text the run used.
    pub profile_path: String,
    pub profile_text: String,
    pub machine: Machine,
}

impl Identity {
    pub fn now(profile_path: &std::path::Path, profile_text: String, seed: u64) -> Identity {
        Identity {
            run_id: format!("{:012x}", rand::random::<u64>() >> 16),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("LOADGEN_COMMIT").to_string(),
            command_line: std::env::args().collect(),
            seed,
            profile_path: profile_path.display().to_string(),
            profile_text,
            machine: Machine::this(),
        }
    }

    /// The summary's first lines.
    pub fn lines(&self, out: &mut String) {
        use std::fmt::Write;
        let m = &self.machine;
        let _ = writeln!(
            out,
            "run {} at {}: loadgen {} ({}), seed {}, on {} ({} cores, {:.1} GiB, {} open files, Linux {})",
            self.run_id,
            self.started_at,
            self.version,
            self.commit,
            self.seed,
            m.hostname,
            m.cores,
            m.memory_bytes as f64 / (1u64 << 30) as f64,
            m.open_files,
            m.kernel
        );
        let _ = writeln!(out, "command: {}", self.command_line.join(" "));
    }
}

impl Machine {
    /// This machine, its open-file limit raised for this process (and so for the
    /// processes it starts).
    pub fn this() -> Machine {
        Machine {
            hostname: crate::resources::this_host(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: crate::resources::meminfo_bytes("MemTotal"),
            open_files: shellkit::open_files::raise_to_hard_limit(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_names_the_build_the_machine_and_the_command() {
        let id = Identity::now(std::path::Path::new("p.yaml"), "users: 1\n".into(), 7);
        assert_eq!(id.run_id.len(), 12);
        assert!(id.started_at.ends_with('Z'), "{}", id.started_at);
        assert!(!id.commit.is_empty());
        assert!(id.machine.cores >= 1 && id.machine.memory_bytes > 0);
        let mut out = String::new();
        id.lines(&mut out);
        assert!(out.contains("seed 7"), "{out}");
        assert!(out.contains("command: "), "{out}");
        // Two runs are told apart.
        let other = Identity::now(std::path::Path::new("p.yaml"), String::new(), 7);
        assert_ne!(id.run_id, other.run_id);
    }
}
