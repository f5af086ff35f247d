//! `sut`: the system under test. `sut up` starts everything; each part also runs alone.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sut: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
