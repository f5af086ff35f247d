//! The internal RPC ports take only the deployment's parts: a connection must prove the
//! RPC key in the data directory before anything it sends is handled; anything else is
//! closed and counted.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use sut::rpc::{Peer, Rpc, RpcCodec};
use sut_wire::open::Credit;
use sut_wire::signing::SigningKey;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

fn refused(metrics: &str) -> u64 {
    scrape(metrics)
        .lines()
        .find_map(|l| l.strip_prefix("sut_rpc_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("sut_rpc_refused_total in the scrape")
}

fn credit() -> Rpc {
    Rpc::ApplyCredits {
        credits: vec![Credit {
            envelope_id: 1,
            user: 2,
            amount_cents: 300,
        }],
    }
}

/// What a connection gets for `first` sent straight away: the server's challenge, then
/// nothing more (closed).
async fn stranger(addr: &str, first: Rpc) -> Vec<Rpc> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut conn = Framed::new(stream, RpcCodec::default());
    conn.send(first).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), conn.next()).await {
        got.push(m);
    }
    got
}

#[tokio::test(flavor = "current_thread")]
async fn only_holders_of_the_rpc_key_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (pay, metrics) = ("127.0.0.1:17660", "127.0.0.1:17661");
    let _payment = spawn(&[
        "payment",
        "--listen",
        pay,
        "--metrics",
        metrics,
        "--data",
        data,
    ]);
    wait_port(pay);
    wait_port(metrics);
    // Waiting for the port connected and left without a proof: counted already.
    let before = refused(metrics);

    // A request without the handshake is never handled.
    let got = stranger(pay, credit()).await;
    assert!(
        matches!(got.as_slice(), [Rpc::Challenge { .. }]),
        "a stranger got {got:?}"
    );
    // A wrong proof is refused.
    let got = stranger(pay, Rpc::Prove { mac: [0; 16] }).await;
    assert!(matches!(got.as_slice(), [Rpc::Challenge { .. }]), "{got:?}");
    // Another deployment's key is refused.
    let mut other = Peer::new(pay, SigningKey::from_bytes([9; 32]));
    assert!(!matches!(
        other.call(credit(), Duration::from_secs(5)).await,
        Some(Ok(Rpc::CreditsApplied { .. }))
    ));
    assert_eq!(refused(metrics) - before, 3);

    // The deployment's own key is served.
    let key = sut::keys::load(&dir.path().join("rpc.key")).unwrap();
    let mut part = Peer::new(pay, key);
    let reply = part.call(credit(), Duration::from_secs(5)).await;
    assert!(
        matches!(reply, Some(Ok(Rpc::CreditsApplied { ref envelope_ids })) if envelope_ids == &[1]),
        "{reply:?}"
    );
    assert_eq!(refused(metrics) - before, 3);
}
