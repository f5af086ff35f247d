//! `loadgen`: run load profiles against the shake system.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the shake red-envelope system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a profile and print its summary; exits non-zero on a breached threshold or a
    /// failed audit.
    Run {
        /// The profile (YAML).
        profile: PathBuf,
        /// Serve Prometheus metrics here during the run, e.g. 127.0.0.1:9464.
        #[arg(long)]
        metrics: Option<String>,
        /// Also write the summary as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// The `sut` binary for spawned targets [default: beside loadgen, then PATH].
        #[arg(long)]
        sut_bin: Option<PathBuf>,
    },
    /// Check a profile without running it.
    Validate { profile: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<ExitCode> {
        match cli.command {
            Command::Validate { profile } => {
                let p = loadgen::profile::Profile::load(&profile)?;
                println!(
                    "{}: ok ({} users, {:.0} s, {} thresholds)",
                    profile.display(),
                    p.users,
                    p.duration().as_secs_f64(),
                    p.thresholds.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Run {
                profile,
                metrics,
                summary_json,
                sut_bin,
            } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the runtime")?;
                rt.block_on(loadgen::run::run(loadgen::run::RunOptions {
                    profile,
                    metrics,
                    summary_json,
                    sut_bin,
                }))
            }
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
