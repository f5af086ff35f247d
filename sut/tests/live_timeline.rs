//! The live timeline with real processes (`sut up`, its config services and gateways):
//! each channel alone brings a change to every gateway; with every channel down the
//! rounds still start on the countdown of the version held; a version not signed by
//! the operator, or older than the one held, is refused and counted.

mod common;

use bytes::Bytes;
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};
use sut::rpc::{Peer, Rpc};
use sut_wire::manifest::Manifest;
use sut_wire::protocol::{Frame, Outcome};
use sut_wire::schedule::{read_applied, Applied, SignedSchedule};

/// How long a test waits for the system to do what it was told.
const PATIENCE: Duration = Duration::from_secs(60);

const GATEWAYS: u16 = 3;

/// Round 1 starts 3 s into the show (the countdown is 1 s): long enough for a test to
/// change the schedule before it starts.
const SHOW: &str = "
version: 1
rounds:
  - { id: 1, start: 3s, duration: 10m, envelopes: 100000, rate: 500, amount_cents: [1, 999], sponsors: [1, 2, 3, 4, 5, 6] }
";

/// `sut up` with 3 gateways on `base`, its control input piped.
struct Show {
    up: Proc,
    data: std::path::PathBuf,
    manifest: Manifest,
    _dir: tempfile::TempDir,
}

impl Show {
    fn start(base: u16) -> Show {
        let (dir, data, timeline) = show_dir(SHOW);
        let base = base.to_string();
        let gateways = GATEWAYS.to_string();
        let up = Proc(
            sut_cmd()
                .args([
                    "up",
                    "--gateways",
                    &gateways,
                    "--data",
                    data.to_str().unwrap(),
                    "--timeline",
                    timeline.to_str().unwrap(),
                    "--base-port",
                    &base,
                    "--countdown",
                    "1s",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_manifest(&data);
        let manifest = sut::files::load_manifest(&data).unwrap();
        Show {
            up,
            data,
            manifest,
            _dir: dir,
        }
    }

    /// Cuts or restores a channel at every gateway, and waits until each says so.
    fn channel(&mut self, channel: &str, down: bool) {
        self.up.control(&format!(
            "channel {channel} {}",
            if down { "down" } else { "up" }
        ));
        let want = format!(
            "sut_gateway_schedule_channel_down{{channel=\"{channel}\"}} {}",
            u8::from(down)
        );
        for (name, addr) in &self.manifest.metrics {
            if name.starts_with("gateway-") {
                wait_for(&format!("{channel} {down} at {name}"), PATIENCE, || {
                    scrape(addr).contains(&want)
                });
            }
        }
    }

    /// Runs `sut timeline CHANGE` against the show; its output.
    fn operator(&self, change: &[&str]) -> String {
        let out = sut_cmd()
            .arg("timeline")
            .arg("--data")
            .arg(&self.data)
            .args(change)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Each gateway's record of `version`, once every gateway has one.
    fn applied_everywhere(&self, version: u64) -> Vec<Applied> {
        let mut got = Vec::new();
        wait_for(
            &format!("version {version} on every gateway"),
            PATIENCE,
            || {
                got = read_applied(&self.data, GATEWAYS)
                    .into_iter()
                    .filter(|a| a.version == version)
                    .collect();
                got.len() == GATEWAYS as usize
            },
        );
        got
    }

    fn gateway_metrics(&self, g: u16) -> String {
        let addr = &self.manifest.metrics[2 + g as usize].1;
        scrape(addr)
    }

    fn audit(self) -> sut_core::audit::AuditReport {
        assert!(self.up.stop().success());
        sut::audit::run(&self.data).unwrap()
    }
}

#[test]
fn each_channel_alone_brings_a_change_to_every_gateway() {
    let mut show = Show::start(21000);
    let channels = ["push", "pull", "gossip"];
    for (k, alone) in channels.iter().enumerate() {
        for c in channels {
            show.channel(c, c != *alone);
        }
        let rate = (300 + 100 * k).to_string();
        let said = show.operator(&["rate", "1", &rate]);
        let version = 2 + k as u64;
        assert!(
            said.contains(&format!("timeline version {version}")),
            "{said}"
        );
        for a in show.applied_everywhere(version) {
            assert_eq!(
                a.channel, *alone,
                "gateway {} got version {version} by {} while only {alone} was up",
                a.gateway, a.channel
            );
        }
    }
    for c in channels {
        show.channel(c, false);
    }
    // Every gateway decides on the last version; its rate is what each gateway issues at.
    for g in 0..GATEWAYS {
        let m = show.gateway_metrics(g);
        assert!(m.contains("sut_config_version 4"), "gateway {g}:\n{m}");
        assert!(
            m.contains("sut_gateway_issuance_rate_limit{round=\"1\"} 166.66"),
            "gateway {g}: 500/s over 3 gateways:\n{m}"
        );
    }
    let report = show.audit();
    assert!(report.passed(), "{report}");
}

/// One shake of a new session of `user`: its reply.
async fn shake_reply(addr: &str, auth: &sut_wire::signing::SigningKey, user: u64) -> Frame {
    let mut c = Client::hello(addr, user, auth).await;
    c.req(Frame::Shake {
        cookie: Bytes::new(),
    })
    .await
    .expect("a shake reply")
}

#[tokio::test(flavor = "current_thread")]
async fn with_every_channel_down_the_round_starts_on_the_countdown_held() {
    let mut show = Show::start(21200);
    for c in ["push", "pull", "gossip"] {
        show.channel(c, true);
    }
    // Round 1 moved a minute later: signed and recorded, but no channel brings it.
    let said = show.operator(&["move", "1", "+60s"]);
    assert!(said.contains("timeline version 2"), "{said}");
    let auth = sut::keys::load(&show.data.join("auth.key")).unwrap();
    let addr = show.manifest.gateway_addrs[0].clone();
    // The countdown runs down on version 1: the round starts 3 s into the show.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut user = 1;
    loop {
        let reply = shake_reply(&addr, &auth, user).await;
        user += 1;
        let Frame::ShakeReply {
            outcome,
            config_version,
            countdown_ms,
            ..
        } = reply
        else {
            panic!("{reply:?}");
        };
        assert_eq!(config_version, 1, "no channel was up to bring version 2");
        if matches!(outcome, Outcome::Envelope { .. }) {
            assert_eq!(countdown_ms, 0, "a round is on");
            break;
        }
        assert!(countdown_ms <= 5_000, "{countdown_ms}");
        assert!(Instant::now() < deadline, "round 1 never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_applied(&show.data, GATEWAYS).is_empty());
    // One channel back: every gateway takes version 2, and round 1 is off until 63 s.
    show.channel("pull", false);
    show.applied_everywhere(2);
    let Frame::ShakeReply {
        outcome,
        config_version,
        countdown_ms,
        ..
    } = shake_reply(&addr, &auth, 999_999).await
    else {
        panic!("no shake reply");
    };
    assert_eq!((outcome, config_version), (Outcome::Nothing, 2));
    assert!(countdown_ms > 40_000, "{countdown_ms}");
    let report = show.audit();
    assert!(report.passed(), "{report}");
    let round = &report.rounds[0];
    assert!(round.issued > 0);
    assert_eq!(round.outside_window, 0, "{report}");
}

#[tokio::test(flavor = "current_thread")]
async fn unsigned_or_older_versions_are_refused_and_counted() {
    let show = Show::start(21400);
    show.operator(&["rate", "1", "300"]);
    show.operator(&["rate", "1", "400"]);
    show.applied_everywhere(3);
    let key = sut::keys::load(&show.data.join("rpc.key")).unwrap();
    let gossip = &show.manifest.gossip_addrs[1];
    let version = |v: u64| -> SignedSchedule {
        let bytes = std::fs::read(show.data.join(format!("timeline/v{v:06}.json"))).unwrap();
        SignedSchedule::from_json(&bytes).unwrap()
    };
    let mut peer = Peer::new(gossip, key);
    // Another operator's signature, then version 3 with its body altered.
    let foreign = {
        let other = sut_wire::schedule::OperatorKey::from_pkcs8(
            &sut_wire::schedule::OperatorKey::generate_pkcs8().unwrap(),
            "k",
        )
        .unwrap();
        let mut s = sut::operator::current(&show.data, &show.manifest).unwrap();
        s.version = 9;
        other.sign(&s)
    };
    let mut tampered = version(3);
    tampered.body = tampered.body.replace("\"version\":3", "\"version\":8");
    for bad in [foreign, tampered] {
        let answer = peer
            .call(Rpc::Gossip { signed: bad }, Duration::from_secs(5))
            .await;
        assert!(
            matches!(&answer, Some(Ok(Rpc::Failed { message })) if message.contains("signature")),
            "{answer:?}"
        );
    }
    // An older version and a repeat change nothing.
    for v in [2, 3] {
        let answer = peer
            .call(Rpc::Gossip { signed: version(v) }, Duration::from_secs(5))
            .await;
        assert!(
            matches!(answer, Some(Ok(Rpc::ScheduleHeld { version: 3 }))),
            "{answer:?}"
        );
    }
    let m = show.gateway_metrics(1);
    let count = |channel: &str, result: &str| -> u64 {
        let needle = format!(
            "sut_gateway_schedule_offers_total{{channel=\"{channel}\",result=\"{result}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{m}"))
    };
    assert_eq!(count("gossip", "refused"), 2, "{m}");
    assert!(count("gossip", "older") >= 1, "{m}");
    assert!(m.contains("sut_config_version 3"), "{m}");
    // The config service refuses a forged publish as well.
    let mut config = Peer::new(
        &show.manifest.config_addrs[0],
        sut::keys::load(&show.data.join("rpc.key")).unwrap(),
    );
    let mut forged = version(3);
    forged.signature = "00".repeat(64);
    let answer = config
        .call(
            Rpc::PublishSchedule { signed: forged },
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(answer, Some(Ok(Rpc::Failed { .. }))), "{answer:?}");
    assert!(show.audit().passed());
}
