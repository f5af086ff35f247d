//! The dashboards, proven on a real Prometheus: a short real run (a spawned system under
//! test and the load generator) is scraped by the `prometheus` binary configured from
//! `deploy/prometheus.yml`; then every query of every panel of every dashboard is
//! evaluated through Prometheus's HTTP API over the run, and each must succeed and
//! return series. Each process's `/metrics` also passes `promtool check metrics`, and
//! exposes exactly the families its catalog lists (the catalogs the dashboards are
//! checked against). The test installs nothing: `scripts/test.sh` (the README's test
//! command) installs Debian's `prometheus`.

mod common;

use common::{bin, http};
use loadgen::dashboard::Dashboard;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LOADGEN_METRICS: &str = "127.0.0.1:19464";
const PROMETHEUS: &str = "127.0.0.1:19490";
const BASE_PORT: u16 = 17700;

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: install the Debian package `prometheus` (apt-get install -y prometheus), as scripts/test.sh does")
    })
}

/// A child process killed when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Prometheus's config for this run: `deploy/prometheus.yml` with this run's addresses
/// and a 1 s scrape interval.
fn prometheus_config(dir: &Path, data: &Path) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus.yml");
    let mut cfg: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    cfg["global"]["scrape_interval"] = "1s".into();
    cfg["global"]["scrape_timeout"] = "1s".into();
    let jobs = cfg["scrape_configs"].as_sequence_mut().unwrap();
    let mut seen = Vec::new();
    for job in jobs.iter_mut() {
        let name = job["job_name"].as_str().unwrap().to_string();
        match name.as_str() {
            "loadgen" => job["static_configs"][0]["targets"] = vec![LOADGEN_METRICS].into(),
            "sut" => {
                let sd = &mut job["file_sd_configs"][0];
                sd["files"] =
                    vec![data.join("prometheus-targets.json").display().to_string()].into();
                sd["refresh_interval"] = "1s".into();
            }
            other => panic!("deploy/prometheus.yml has a job `{other}` this test does not know"),
        }
        seen.push(name);
    }
    assert_eq!(seen, ["loadgen", "sut"], "deploy/prometheus.yml jobs");
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

fn check_config(promtool: &Path, config: &Path) {
    let out = Command::new(promtool)
        .args(["check", "config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config {}:\n{}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool check metrics` on one scrape; returns the families it exposes.
fn check_metrics(promtool: &Path, addr: &str, dir: &Path) -> Vec<String> {
    let (status, body) = http(addr, "GET /metrics", "");
    assert_eq!(status, 200, "{addr}/metrics");
    let file = dir.join(format!("scrape-{}.prom", addr.replace(':', "_")));
    std::fs::write(&file, &body).unwrap();
    let out = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {addr}/metrics:\n{said}"
    );
    let mut families: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    families.sort();
    families
}

fn query_range(expr: &str, start: f64, end: f64) -> serde_json::Value {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .append_pair("start", &format!("{start:.3}"))
        .append_pair("end", &format!("{end:.3}"))
        .append_pair("step", "1")
        .finish();
    let (status, body) = http(PROMETHEUS, "POST /api/v1/query_range", &form);
    let json: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("Prometheus answered {status} with non-JSON: {body}"));
    assert_eq!(json["status"], "success", "{expr}\n{body}");
    json
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let prometheus = tool("prometheus");
    let promtool = tool("promtool");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");

    check_config(
        &promtool,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus.yml"),
    );
    let config = prometheus_config(dir, &data);
    check_config(&promtool, &config);

    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("Prometheus to be ready", Duration::from_secs(60), || {
        std::net::TcpStream::connect(PROMETHEUS).is_ok()
            && http(PROMETHEUS, "GET /-/ready", "").0 == 200
    });

    // Two short rounds inside the run, so issuance, opens and credits all move.
    std::fs::write(
        dir.join("timeline.yaml"),
        "version: 1\nrounds:\n  - { id: 1, start: 1s, duration: 8s, envelopes: 600, rate: 100, amount_cents: [1, 500], sponsors: [1, 2, 3], resources: [1, 2] }\n  - { id: 2, start: 11s, duration: 8s, envelopes: 600, rate: 100, amount_cents: [1, 500], sponsors: [4, 5], resources: [3] }\n",
    )
    .unwrap();
    let profile = format!(
        "target:\n  spawn: {{ gateways: 2, timeline: timeline.yaml, data: {}, base_port: {BASE_PORT}, countdown: 1s, settle: 1s }}\nusers: 300\nstages:\n  - {{ duration: 3s, target: 300 }}\n  - {{ duration: 20s, target: 300 }}\n  - {{ duration: 2s, target: 0 }}\nbehaviour:\n  shake_rate: 1\n  open_probability: 0.9\n  heartbeat_interval: 4s\n  transport: {{ tcp: 0.5, quic: 0.5 }}\npre_push: {{ servers: 2, items: 10, min_size: 4KiB, max_size: 8KiB, user_bandwidth: 8KiB }}\nthresholds:\n  - 'shake: p99 < 5s'\n  - 'errors: rate < 1%'\n  - 'memory: growth < 1GiB'\n",
        data.display()
    );
    std::fs::write(dir.join("profile.yaml"), profile).unwrap();
    let started = unix_s();
    let run_out = std::fs::File::create(dir.join("loadgen.log")).unwrap();
    let mut run = Killed(
        Command::new(bin("loadgen"))
            .arg("run")
            .arg(dir.join("profile.yaml"))
            .args(["--metrics", LOADGEN_METRICS])
            .arg("--report-dir")
            .arg(dir.join("report"))
            .stdin(Stdio::null())
            .stdout(run_out.try_clone().unwrap())
            .stderr(run_out)
            .spawn()
            .unwrap(),
    );

    // Mid-run: every process's exposition passes promtool and matches its catalog.
    let run_log = dir.join("loadgen.log");
    wait_for(
        "the system under test to be up",
        Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = run.0.try_wait() {
                panic!(
                    "loadgen ended early ({status}):\n{}",
                    std::fs::read_to_string(&run_log).unwrap_or_default()
                );
            }
            data.join("manifest.json").exists()
        },
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("manifest.json")).unwrap()).unwrap();
    wait_for(
        "the load generator's metrics",
        Duration::from_secs(60),
        || std::net::TcpStream::connect(LOADGEN_METRICS).is_ok(),
    );
    let mut expected: Vec<String> = loadgen::prom::METRICS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    expected.sort();
    assert_eq!(check_metrics(&promtool, LOADGEN_METRICS, dir), expected);
    for part in manifest["metrics"].as_array().unwrap() {
        let (name, addr) = (part[0].as_str().unwrap(), part[1].as_str().unwrap());
        let component = name.split('-').next().unwrap();
        let mut expected: Vec<String> = sut_wire::metric_names::CATALOG
            .iter()
            .filter(|(c, _, _)| *c == component)
            .map(|(_, n, _)| n.to_string())
            .collect();
        expected.sort();
        assert_eq!(
            check_metrics(&promtool, addr, dir),
            expected,
            "{name} at {addr}"
        );
    }

    let status = run.0.wait().unwrap();
    let ended = unix_s();
    assert!(
        status.success(),
        "loadgen run failed:\n{}",
        std::fs::read_to_string(&run_log).unwrap_or_default()
    );
    check_report(&dir.join("report"));
    let targets = query_range("count(up == 1)", started, ended);
    let most_up = targets["data"]["result"][0]["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|p| p[1].as_str()?.parse::<u32>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    assert_eq!(most_up, 10, "Prometheus should have scraped the load generator, payment, the backend, 2 config services, 2 gateways, 2 resource servers and `sut up` at once");

    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut checked = 0;
    let mut empty = Vec::new();
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d = Dashboard::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for q in &d.queries {
            let expr = d.expand(&q.expr);
            let result = query_range(&expr, started, ended);
            if result["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                empty.push(format!(
                    "{} panel {} `{}`: {expr}",
                    d.title, q.panel_id, q.title
                ));
            }
            checked += 1;
        }
    }
    assert!(
        empty.is_empty(),
        "queries that returned no series:\n{}",
        empty.join("\n")
    );
    assert!(checked >= 40, "only {checked} queries checked");
}

/// The run's report directory: a self-contained HTML page with its plots, and an
/// interval log whose intervals add up, per operation, to the summary's counts.
fn check_report(dir: &Path) {
    use std::collections::BTreeMap;

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.matches("<svg").count() >= 6,
        "every plot is inline SVG"
    );
    for external in ["<script", "src=\"http", "href=\"http", "@import"] {
        assert!(
            !html.contains(external),
            "the report must load nothing: found {external}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let counts: BTreeMap<String, u64> = common::hlog_totals(&dir.join("latency.hlog"))
        .into_iter()
        .map(|(op, h)| (op, h.len()))
        .collect();
    for (op, figures) in summary["ops"].as_object().unwrap() {
        let expected = figures["count"].as_u64().unwrap();
        assert_eq!(
            counts.get(op).copied().unwrap_or(0),
            expected,
            "interval log count of {op}"
        );
    }
}
