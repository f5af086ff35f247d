//! QUIC users against real gateways on loopback: the whole flow over QUIC beside TCP
//! users in one run, split by transport in the summary; and the certificate trust path
//! (a running system is driven with the certificate named in `target.addresses`, and a
//! certificate that is not the gateways' is refused).

mod common;

const TIMELINE: &str = "
rounds:
  - { id: 1, start: 1s, duration: 6s, envelopes: 400, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3, 4] }
";

#[test]
fn quic_and_tcp_users_play_side_by_side_and_the_audit_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let data = dir.path().join("data");
    let profile = format!(
        "
target:
  spawn: {{ gateways: 2, timeline: timeline.yaml, data: {}, base_port: 16700, countdown: 1s, settle: 1s, split_ttl: 2s }}
users: 300
stages:
  - {{ duration: 1s, target: 300 }}
  - {{ duration: 7s, target: 300 }}
  - {{ duration: 1s, target: 0 }}
behaviour:
  shake_rate: 2
  open_probability: 0.8
  split: {{ share_probability: 1, friends: 4, grab_delay: 200ms }}
  transport: {{ tcp: 0.5, quic: 0.5 }}
thresholds:
  - 'errors: count == 0'
",
        data.display()
    );
    let (report, stdout) = common::run_loadgen(dir.path(), &profile, &[]);
    assert!(
        report["audit"]["violations"].as_array().unwrap().is_empty(),
        "{}",
        report["audit"]
    );
    let transports = &report["transports"];
    let count = |t: &str, op: &str| transports[t]["ops"][op]["count"].as_u64().unwrap_or(0);
    for t in ["tcp", "quic"] {
        let users = transports[t]["users_connected"].as_u64().unwrap();
        assert!((100..200).contains(&users), "{t}: {users} users\n{stdout}");
        for op in ["connect", "hello", "shake", "open", "share", "grab"] {
            assert!(count(t, op) > 0, "no {op} over {t}\n{stdout}");
        }
        assert_eq!(transports[t]["errors"], 0, "{stdout}");
    }
    // The split adds up to the whole.
    let users: u64 = ["tcp", "quic"]
        .iter()
        .map(|t| transports[t]["users_connected"].as_u64().unwrap())
        .sum();
    assert_eq!(users, report["users_connected"].as_u64().unwrap());
    assert_eq!(
        count("tcp", "shake") + count("quic", "shake"),
        report["ops"]["shake"]["count"].as_u64().unwrap()
    );
    assert!(stdout.contains("by transport:"), "{stdout}");
}

/// A self-signed certificate for 127.0.0.1 that is not the gateways'.
fn stranger_certificate(path: &std::path::Path) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(path, made.cert.pem()).unwrap();
}

#[test]
fn quic_users_trust_the_named_certificate_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let _sut = common::Sut::start(dir.path(), 1, 16800, &[]);
    let data = dir.path().join("data");
    let stranger = dir.path().join("stranger.pem");
    stranger_certificate(&stranger);
    let run = |cert: &std::path::Path, name: &str| {
        let profile = format!(
            "
target:
  addresses:
    gateways: ['127.0.0.1:16810']
    auth_key_file: {}
    quic_cert: {}
users: 20
stages:
  - {{ duration: 1s, target: 20 }}
  - {{ duration: 2s, target: 20 }}
behaviour:
  shake_rate: 1
  open_probability: 0
  request_timeout: 2s
  transport: quic
thresholds:
  - 'errors: count == 0'
",
            data.join("auth.key").display(),
            cert.display()
        );
        common::run_loadgen_named(dir.path(), name, &profile, &[])
    };
    let (passed, report, stdout) = run(&stranger, "stranger");
    assert!(!passed, "users trusted a stranger's certificate\n{stdout}");
    assert_eq!(report["ops"]["hello"]["count"], 0, "{stdout}");
    let refused = report["errors_by_kind"]["connect/quic_tls"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused > 0,
        "handshakes not refused as TLS failures\n{stdout}"
    );

    let (passed, report, stdout) = run(&data.join("quic-cert.pem"), "gateways");
    assert!(passed, "{stdout}");
    assert_eq!(
        report["transports"]["quic"]["users_connected"], 20,
        "{stdout}"
    );
    assert!(
        report["ops"]["shake"]["count"].as_u64().unwrap() > 0,
        "{stdout}"
    );
}

/// Every QUIC user is on a lossy, slow link (5 % loss and 20 ms each way), and halfway
/// through every user's network changes (a new port): each session survives both, and
/// the gateways answered at the new addresses (the connections migrated).
#[test]
fn quic_sessions_survive_loss_and_a_network_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("timeline.yaml"), TIMELINE).unwrap();
    let data = dir.path().join("data");
    let profile = format!(
        "
target:
  spawn: {{ gateways: 2, timeline: timeline.yaml, data: {}, base_port: 16900, countdown: 1s, settle: 1s }}
users: 40
stages:
  - {{ duration: 1s, target: 40 }}
  - {{ duration: 7s, target: 40 }}
behaviour:
  shake_rate: 2
  open_probability: 1
  request_timeout: 5s
  transport: quic
network:
  - {{ name: lossy, loss_percent: 5, delay: 20ms, jitter: 5ms, reorder_percent: 2, change_at: 4s }}
thresholds:
  - 'errors: count == 0'
",
        data.display()
    );
    let (report, stdout) = common::run_loadgen(dir.path(), &profile, &[]);
    let quic = &report["transports"]["quic"];
    let n = |k: &str| quic[k].as_u64().unwrap_or_else(|| panic!("{k}: {quic}"));
    assert_eq!(n("users_connected"), 40, "{stdout}");
    assert_eq!(n("network_changes"), 40, "{stdout}");
    assert_eq!(n("sessions_kept_through_change"), 40, "{stdout}");
    assert_eq!(n("connection_drops"), 0, "{stdout}");
    assert!(n("datagrams_to_new_address") > 0, "no migration\n{stdout}");
    // Every user shook more than once, through the loss.
    assert!(
        quic["ops"]["shake"]["count"].as_u64().unwrap() > 80,
        "{stdout}"
    );
    assert!(report["audit"]["violations"].as_array().unwrap().is_empty());
    assert!(stdout.contains("network: lossy"), "{stdout}");
}
