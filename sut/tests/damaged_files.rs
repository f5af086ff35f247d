//! A database file that existed is never silently re-created: emptied, truncated or
//! removed after a run, it stops `sut up` and `sut audit` with the file's name and what
//! to do, never a panic from the storage library (exit code 101) and never a fresh,
//! empty database that would forget what users were told.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn up(data: &Path, timeline: &Path) -> Command {
    let mut c = sut_cmd();
    c.args([
        "up",
        "--gateways",
        "1",
        "--base-port",
        "18600",
        "--countdown",
        "0s",
    ])
    .arg("--data")
    .arg(data)
    .arg("--timeline")
    .arg(timeline);
    c
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` to its end (at most 60 s) and checks it refused, naming `file` and `hint`.
fn refuses(cmd: Command, file: &str, hint: &str) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = said(&out);
    assert_ne!(
        out.status.code(),
        Some(124),
        "it did not stop on a damaged {file}:\n{text}"
    );
    assert!(!out.status.success(), "it ran on a damaged {file}:\n{text}");
    assert_ne!(out.status.code(), Some(101), "a panic:\n{text}");
    assert!(!text.contains("panicked"), "a panic:\n{text}");
    assert!(text.contains(file), "the file is not named:\n{text}");
    assert!(text.contains(hint), "no `{hint}`:\n{text}");
}

#[test]
fn emptied_truncated_or_removed_databases_are_refused_by_name() {
    let (_dir, data, timeline) = common::show_dir(TIMELINE);
    // A run that creates every database, stopped cleanly.
    let first = Proc(up(&data, &timeline).spawn().unwrap());
    wait_port("127.0.0.1:18610");
    assert!(first.stop().success());
    let audit = || {
        let mut c = sut_cmd();
        c.args(["audit", "--data"]).arg(&data);
        c
    };

    let payment = data.join("payment.redb");
    let whole = std::fs::read(&payment).unwrap();
    std::fs::write(&payment, b"").unwrap();
    refuses(up(&data, &timeline), "payment.redb", "empty");
    refuses(audit(), "payment.redb", "empty");
    std::fs::write(&payment, &whole).unwrap();

    let gateway = data.join("gateway-0.redb");
    let whole = std::fs::read(&gateway).unwrap();
    std::fs::write(&gateway, &whole[..whole.len() / 3]).unwrap();
    refuses(up(&data, &timeline), "gateway-0.redb", "restore it");
    refuses(audit(), "gateway-0.redb", "restore it");
    std::fs::write(&gateway, &whole).unwrap();

    let envelope = data.join("envelope.redb");
    let whole = std::fs::read(&envelope).unwrap();
    std::fs::remove_file(&envelope).unwrap();
    refuses(up(&data, &timeline), "envelope.redb", "gone");
    std::fs::write(&envelope, &whole).unwrap();

    // Whole again: it runs, and the audit passes.
    let again = Proc(up(&data, &timeline).spawn().unwrap());
    wait_port("127.0.0.1:18610");
    assert!(again.stop().success());
    let out = audit().output().unwrap();
    assert!(out.status.success(), "{}", said(&out));
}
