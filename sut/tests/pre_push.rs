//! Resource servers with real processes (`sut up --resource-servers 2`): the signed
//! manifest and its ETag, items resumed by range and guarded by If-Range, corrupted
//! responses as an injected fault, an operator's update that changes only the items
//! it names, and a server's own counts.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;
use sut_core::pre_push::artwork::digest_hex;
use sut_wire::manifest::Manifest;
use sut_wire::resource_manifest::{ResourceManifest, SignedManifest};

/// How long a test waits for the system to do what it was told.
const PATIENCE: Duration = Duration::from_secs(30);

/// One HTTP/1.1 GET with `headers`: status, headers (lowercase names), body bytes.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hdrs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    (status, hdrs, raw[split + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

struct Cdn {
    up: Proc,
    data: std::path::PathBuf,
    manifest: Manifest,
    _dir: tempfile::TempDir,
}

impl Cdn {
    fn start(base: u16) -> Cdn {
        let (dir, data, timeline) = show_dir(TIMELINE);
        let up = Proc(
            sut_cmd()
                .args(["up", "--gateways", "1", "--countdown", "1s"])
                .args(["--data", data.to_str().unwrap()])
                .args(["--timeline", timeline.to_str().unwrap()])
                .args(["--base-port", &base.to_string()])
                .args(["--resource-servers", "2", "--resource-items", "4"])
                .args([
                    "--resource-min-size",
                    "40000",
                    "--resource-max-size",
                    "70000",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_manifest(&data);
        let manifest = sut::files::load_manifest(&data).unwrap();
        for a in &manifest.resource_addrs {
            wait_port(a);
        }
        Cdn {
            up,
            data,
            manifest,
            _dir: dir,
        }
    }

    fn server(&self, i: usize) -> &str {
        &self.manifest.resource_addrs[i]
    }

    fn metrics(&self, i: usize) -> String {
        let name = format!("resources-{i}");
        let (_, addr) = self
            .manifest
            .metrics
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap();
        scrape(addr)
    }

    /// The manifest server `i` hands out, verified under the operator's key.
    fn manifest_of(&self, i: usize) -> ResourceManifest {
        let (status, _, body) = get(self.server(i), "/manifest", &[]);
        assert_eq!(status, 200);
        let public = sut::schedule_files::operator_public(&self.data).unwrap();
        public
            .verify_manifest(&SignedManifest::from_json(&body).unwrap())
            .unwrap()
    }
}

#[test]
fn resource_servers_resume_revalidate_corrupt_on_purpose_and_serve_updates() {
    let mut cdn = Cdn::start(24400);
    let v1 = cdn.manifest_of(0);
    assert_eq!(v1.version, 1);
    // The timeline's greeting image comes first.
    assert_eq!(v1.items[0].id, 7);
    assert_eq!(v1.items.len(), 4);

    // The manifest: unchanged is a 304.
    let (status, _, body) = get(cdn.server(1), "/manifest", &[("If-None-Match", "\"m1\"")]);
    assert_eq!((status, body.len()), (304, 0));

    // An item whole, its digest matching; then resumed from a byte.
    let item = &v1.items[3];
    let path = format!("/items/{}", item.id);
    let (status, h, whole) = get(cdn.server(0), &path, &[]);
    assert_eq!(status, 200);
    assert_eq!(digest_hex(&whole), item.sha256);
    assert_eq!(header(&h, "etag"), Some(item.etag().as_str()));
    let (status, h, rest) = get(
        cdn.server(1),
        &path,
        &[("Range", "bytes=1000-"), ("If-Range", &item.etag())],
    );
    assert_eq!(status, 206);
    assert_eq!(rest, whole[1000..]);
    let range = format!("bytes 1000-{}/{}", item.size - 1, item.size);
    assert_eq!(header(&h, "content-range"), Some(range.as_str()));
    // A range for other bytes than the server's (If-Range differs): the whole item.
    let (status, _, again) = get(
        cdn.server(1),
        &path,
        &[("Range", "bytes=1000-"), ("If-Range", "\"not-this\"")],
    );
    assert_eq!((status, again.len()), (200, whole.len()));
    let (status, _, _) = get(cdn.server(1), &path, &[("If-None-Match", &item.etag())]);
    assert_eq!(status, 304);
    let past = format!("bytes={}-", item.size);
    assert_eq!(get(cdn.server(1), &path, &[("Range", &past)]).0, 416);
    assert_eq!(get(cdn.server(1), "/items/99999", &[]).0, 404);
    assert_eq!(get(cdn.server(1), "/items/x", &[]).0, 404);

    // Every response from resources-1 corrupted: a byte differs, the digest fails.
    cdn.up.control("resources corrupt resources-1 100%");
    wait_for("the corrupt fault", PATIENCE, || {
        cdn.metrics(1).contains("sut_resource_corrupt_share 1.0")
    });
    let (status, _, bad) = get(cdn.server(1), &path, &[]);
    assert_eq!(status, 200);
    assert_eq!(bad.len(), whole.len());
    assert_ne!(
        digest_hex(&bad),
        item.sha256,
        "a corrupted body must not verify"
    );
    assert_eq!(value(&cdn.metrics(1), "sut_resource_corrupted_total"), 1.0);
    cdn.up.control("resources ok resources-1");
    wait_for("the fault cleared", PATIENCE, || {
        cdn.metrics(1).contains("sut_resource_corrupt_share 0.0")
    });
    assert_eq!(digest_hex(&get(cdn.server(1), &path, &[]).2), item.sha256);

    // Slowed to 64 KiB/s, a server still serves whole items, and says so.
    cdn.up.control("resources slow resources-0 64KiB");
    wait_for("the slow fault", PATIENCE, || {
        cdn.metrics(0)
            .contains("sut_resource_bandwidth_budget_bytes 65536")
    });
    assert_eq!(digest_hex(&get(cdn.server(0), &path, &[]).2), item.sha256);
    cdn.up.control("resources ok resources-0");
    wait_for("the budget back", PATIENCE, || {
        cdn.metrics(0)
            .contains("sut_resource_bandwidth_budget_bytes 20971520")
    });

    // The operator updates two items: the next version changes those and no other.
    cdn.up
        .control(&format!("resources update {} {}", v1.items[1].id, item.id));
    wait_for("both servers on version 2", PATIENCE, || {
        (0..2).all(|i| cdn.metrics(i).contains("sut_resource_manifest_version 2"))
    });
    let v2 = cdn.manifest_of(1);
    let changed: Vec<u32> = v2
        .items
        .iter()
        .zip(&v1.items)
        .filter(|(a, b)| a.sha256 != b.sha256)
        .map(|(a, _)| a.id)
        .collect();
    assert_eq!(changed, vec![v1.items[1].id, item.id]);
    let (status, _, fresh) = get(cdn.server(0), &path, &[]);
    assert_eq!(status, 200);
    assert_eq!(digest_hex(&fresh), v2.items[3].sha256);
    // A resume against the old bytes now gets the new item whole.
    let (status, _, _) = get(
        cdn.server(0),
        &path,
        &[("Range", "bytes=1000-"), ("If-Range", &item.etag())],
    );
    assert_eq!(status, 200);

    // The server's own counts: statuses and the bytes it sent.
    let m = cdn.metrics(1);
    assert!(
        value(&m, "sut_resource_requests_total{status=\"304\"}") >= 2.0,
        "{m}"
    );
    assert_eq!(
        value(&m, "sut_resource_requests_total{status=\"416\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "sut_resource_requests_total{status=\"404\"}"),
        2.0
    );
    assert!(value(&m, "sut_resource_bytes_served_total") >= (whole.len() * 3) as f64);

    // A fault for a server that does not exist says which do.
    cdn.up.control("resources corrupt resources-7 10%");
    cdn.up.control("resources show");
    drop(cdn.up.0.stdin.take());
    let status = cdn.up.stop();
    assert!(status.success(), "sut up stopped cleanly");
}

#[test]
fn hostile_clients_cost_a_resource_server_a_bounded_time_and_no_one_else_anything() {
    let cdn = Cdn::start(24600);
    let addr = cdn.server(0).to_string();
    // One connection says nothing; another trickles a head it never ends.
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let mut trickle = std::net::TcpStream::connect(&addr).unwrap();
    trickle
        .write_all(b"GET /manifest HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Meanwhile an honest phone is served at once.
    let (status, _, body) = get(&addr, "/manifest", &[]);
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    // A head past hyper's buffer is refused with 431, never buffered whole.
    let big = "a".repeat(500_000);
    let (status, _, _) = get(&addr, "/manifest", &[("X-Big", &big)]);
    assert_eq!(status, 431);
    // Both hostile connections are closed by the server (its 10 s head deadline),
    // well before this test's own bound.
    for (name, mut s) in [("silent", silent), ("trickle", trickle)] {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!("{name}: answered {n} bytes instead of being closed"),
            Err(e) => panic!("{name}: still open after 60 s ({e})"),
        }
    }
    drop(cdn);
}

#[test]
fn the_operator_command_updates_and_shows_the_manifest() {
    let (_dir, data, timeline) = show_dir(TIMELINE);
    std::fs::create_dir_all(&data).unwrap();
    let key = sut::schedule_files::operator_key(&data).unwrap();
    let t = sut::files::load_timeline(&timeline).unwrap();
    let cat = sut::pre_push::files::Catalogue {
        items: 3,
        min_bytes: 100,
        max_bytes: 300,
    };
    sut::pre_push::files::publish_first(&data, &key, &t, cat).unwrap();
    let run = |args: &[&str]| {
        let out = sut_cmd()
            .arg("resources")
            .args(["--data", data.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(&["update", "7"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("manifest version 2") && out.contains("7@v2"),
        "{out}"
    );
    let (ok, out) = run(&["update", "1234"]);
    assert!(!ok);
    assert!(
        out.contains("item 1234 is not in manifest version 2"),
        "{out}"
    );
    let (ok, out) = run(&["update", "seven"]);
    assert!(!ok);
    assert!(out.contains("`seven` is not an item id"), "{out}");
    let (ok, out) = run(&["show"]);
    assert!(ok && out.contains("3 items"), "{out}");
}
