//! The reference the shake path is measured against (`bench/shakes.sh`): what this
//! machine does with the same connections and frame sizes when nothing but an echo
//! stands behind them.
//!
//! - `echo-reference serve --listen ADDR`: one process per gateway, a single-threaded
//!   tokio runtime as a gateway has, writing back whatever each connection sends.
//! - `echo-reference drive --connect ADDR,ADDR --connections N`: one process, one mio
//!   event loop with the load generator's own kernel timer, keeping one request in
//!   flight per connection: as fast as replies come (`--rate 0`, saturated), or on a
//!   schedule of `--rate` requests a second per connection, latency counted from each
//!   request's intended send time as the load generator counts it. It prints one JSON
//!   object: requests a second, CPU per request and latency percentiles over the
//!   measured window.

mod client;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Bare echo server and client: the reference for bench/shakes.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write back whatever each connection sends, on one thread.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Keep one request in flight on each of N connections and print what it measured.
    Drive(client::DriveArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { listen } => serve(listen),
        Command::Drive(args) => {
            if args.connections == 0 || args.connect.is_empty() {
                bail!("--connections must be at least 1 and --connect name at least one address");
            }
            let figures = client::drive(&args)?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
    }
}

fn serve(listen: SocketAddr) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::task::yield_now().await;
                continue;
            };
            tokio::spawn(echo(stream));
        }
    })
}

async fn echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Parses `500us`, `2s` and the like.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 2s: {e}"))
}
