//! A resource server (`sut resource-server`): one node of the small CDN that hands the
//! pre-push items to clients over HTTP.
//!
//! - `GET /manifest`: the newest signed manifest; `ETag: "mVERSION"`, so a client
//!   polling with `If-None-Match` gets `304 Not Modified` until a new version is out.
//! - `GET /items/ID`: the item's current bytes; `ETag` is its SHA-256, `If-None-Match`
//!   answers 304, `Range: bytes=N-` resumes a cut download (`206`), guarded by
//!   `If-Range` so a resumed download never mixes two versions' bytes.
//! - A bandwidth budget for the whole server: every chunk of every body waits for its
//!   bytes ([`governor`]), so a server serves at most its budget however many ask.
//! - Faults, set over the internal RPC (`Rpc::ResourceFault`, from `sut up`'s control
//!   lines): a share of item responses with one byte flipped (the client's digest check
//!   must refuse them), and a lower bandwidth (slow). Down is the supervisor's `kill`.
//!
//! It reloads the data directory's newest manifest (and its items' bytes, held in
//! memory) twice a second, off its event loop.

use super::catalog::Catalog;
use super::limits::{self, Limiter};
use crate::metrics::{labels, prefill, Counters};
use crate::rpc::{self, Rpc};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rand::Rng;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use sut_wire::schedule::OperatorPublic;
use sut_wire::signing::SigningKey;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct ResourceServerConfig {
    pub name: String,
    pub listen: String,
    /// The internal RPC port that takes fault settings.
    pub control: String,
    pub metrics: Option<String>,
    pub data: PathBuf,
    /// Bytes per second this server sends at most, over all clients.
    pub bandwidth: u64,
    pub public: OperatorPublic,
    pub rpc_key: SigningKey,
}

/// What every request handler shares.
struct Server {
    catalog: RwLock<Option<Arc<Catalog>>>,
    limiter: RwLock<Arc<Limiter>>,
    budget: u64,
    /// Share of item responses corrupted, in millionths.
    corrupt_ppm: AtomicU64,
    bandwidth_now: AtomicU64,
    metrics: ServerMetrics,
}

#[derive(Default)]
struct ServerMetrics {
    bytes: Counter,
    requests: Counters,
    corrupted: Counter,
    bandwidth: Gauge,
    budget: Gauge,
    corrupt_share: Gauge<f64, std::sync::atomic::AtomicU64>,
    version: Gauge,
}

impl ServerMetrics {
    fn register(&self, registry: &mut Registry) {
        prefill(
            &self.requests,
            "status",
            &["200", "206", "304", "404", "416"],
        );
        registry.register(
            "sut_resource_bytes_served",
            "Body bytes this resource server handed to clients' connections",
            self.bytes.clone(),
        );
        registry.register(
            "sut_resource_requests",
            "Requests answered, by HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "sut_resource_corrupted",
            "Item responses sent with a byte flipped (an injected fault: clients must refuse them)",
            self.corrupted.clone(),
        );
        registry.register(
            "sut_resource_bandwidth_bytes",
            "Body bytes served in the last whole second",
            self.bandwidth.clone(),
        );
        registry.register(
            "sut_resource_bandwidth_budget_bytes",
            "Bytes per second this server sends at most now (lower while slowed by a fault)",
            self.budget.clone(),
        );
        registry.register(
            "sut_resource_corrupt_share",
            "Share of item responses corrupted on purpose now (a fault; 0 normally)",
            self.corrupt_share.clone(),
        );
        registry.register(
            "sut_resource_manifest_version",
            "The resource manifest version this server hands out (0: none yet)",
            self.version.clone(),
        );
    }

    fn status(&self, code: StatusCode) {
        self.requests
            .get_or_create(&labels(&[("status", code.as_str())]))
            .inc();
    }
}

/// Runs the server until `shutdown`.
pub async fn run(
    config: ResourceServerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), crate::listen::ListenError> {
    let server = Arc::new(Server {
        catalog: RwLock::new(None),
        limiter: RwLock::new(Arc::new(limits::limiter(config.bandwidth))),
        budget: config.bandwidth,
        corrupt_ppm: AtomicU64::new(0),
        bandwidth_now: AtomicU64::new(0),
        metrics: ServerMetrics::default(),
    });
    server
        .metrics
        .budget
        .set(limits::applied(config.bandwidth) as i64);
    let mut registry = Registry::default();
    server.metrics.register(&mut registry);
    let refused = crate::metrics::rpc_refused(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let http = crate::listen::bind(&config.listen).await?;
    let control = crate::listen::bind(&config.control).await?;
    tokio::spawn(reload(
        server.clone(),
        config.data.clone(),
        config.public.clone(),
    ));
    tokio::spawn(measure_bandwidth(server.clone()));
    let s = server.clone();
    tokio::spawn(rpc::serve(
        control,
        config.rpc_key,
        refused,
        shutdown.clone(),
        move |request| {
            let s = s.clone();
            async move { s.fault(request) }
        },
    ));
    crate::log_line!(
        "resource server {} listening on {} ({} bytes/s)",
        config.name,
        config.listen,
        config.bandwidth
    );
    let app = Router::new()
        .route("/manifest", get(manifest))
        .route("/items/{id}", get(item))
        .with_state(server);
    limits::serve_http(http, app, shutdown).await;
    crate::log_line!("resource server {} stopped", config.name);
    Ok(())
}

impl Server {
    fn fault(&self, request: Rpc) -> Rpc {
        let Rpc::ResourceFault {
            corrupt_ppm,
            bandwidth,
        } = request
        else {
            return Rpc::Failed {
                message: format!("a resource server does not take {request:?}"),
            };
        };
        let ppm = corrupt_ppm.min(1_000_000);
        let share = f64::from(ppm) / 1e6;
        self.corrupt_ppm.store(u64::from(ppm), Ordering::Relaxed);
        self.metrics.corrupt_share.set(share);
        let rate = limits::applied(if bandwidth == 0 {
            self.budget
        } else {
            bandwidth
        });
        if let Ok(mut l) = self.limiter.write() {
            *l = Arc::new(limits::limiter(rate));
        }
        self.metrics.budget.set(rate as i64);
        crate::log_line!("resource server faults: corrupt share {share}, bandwidth {rate} bytes/s");
        Rpc::ResourceFaultSet {
            corrupt_ppm: ppm,
            bandwidth: rate,
        }
    }

    fn current(&self) -> Option<Arc<Catalog>> {
        self.catalog.read().ok().and_then(|c| c.clone())
    }

    fn set_version(&self, version: u64) {
        self.metrics.version.set(version as i64);
    }

    fn answer(
        &self,
        status: StatusCode,
        headers: &[(header::HeaderName, String)],
        body: Body,
    ) -> Response {
        self.metrics.status(status);
        let mut r = Response::new(body);
        *r.status_mut() = status;
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                r.headers_mut().insert(name.clone(), v);
            }
        }
        r
    }
}

/// Whether an `If-None-Match` or `If-Range` header names `etag`.
fn names(headers: &HeaderMap, name: header::HeaderName, etag: &str) -> Option<bool> {
    let v = headers.get(name)?.to_str().ok()?;
    Some(
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*"),
    )
}

async fn manifest(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let Some(catalog) = server.current() else {
        return server.answer(
            StatusCode::NOT_FOUND,
            &[],
            Body::from("no manifest published yet\n"),
        );
    };
    let etag = catalog.manifest.etag();
    if names(&headers, header::IF_NONE_MATCH, &etag) == Some(true) {
        return server.answer(
            StatusCode::NOT_MODIFIED,
            &[(header::ETAG, etag)],
            Body::empty(),
        );
    }
    let body = catalog.signed.clone();
    server.sent(body.len());
    server.answer(
        StatusCode::OK,
        &[
            (header::ETAG, etag),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        Body::from(body),
    )
}

async fn item(
    State(server): State<Arc<Server>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let found = server
        .current()
        .and_then(|c| id.parse::<u32>().ok().and_then(|id| c.item(id)));
    let Some((item, bytes)) = found else {
        return server.answer(
            StatusCode::NOT_FOUND,
            &[],
            Body::from(format!("no item {id} in the current manifest\n")),
        );
    };
    let etag = item.etag();
    if names(&headers, header::IF_NONE_MATCH, &etag) == Some(true) {
        return server.answer(
            StatusCode::NOT_MODIFIED,
            &[(header::ETAG, etag)],
            Body::empty(),
        );
    }
    let size = bytes.len() as u64;
    // A range is honoured only for the bytes the client has part of (If-Range).
    let same = names(&headers, header::IF_RANGE, &etag).unwrap_or(true);
    let range = headers
        .get(header::RANGE)
        .filter(|_| same)
        .and_then(|v| v.to_str().ok())
        .map(|v| limits::range(v, size));
    let (status, from, to) = match range {
        None | Some(limits::Range::Whole) => (StatusCode::OK, 0, size),
        Some(limits::Range::Part(from, to)) => (StatusCode::PARTIAL_CONTENT, from, to),
        Some(limits::Range::Unsatisfiable) => {
            return server.answer(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[(header::CONTENT_RANGE, format!("bytes */{size}"))],
                Body::empty(),
            )
        }
    };
    let mut hdrs = vec![
        (header::ETAG, etag),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CONTENT_LENGTH, (to - from).to_string()),
        (header::CONTENT_TYPE, "application/octet-stream".into()),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        hdrs.push((
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{size}", to - 1),
        ));
    }
    let part = bytes.slice(from as usize..to as usize);
    let share = server.corrupt_ppm.load(Ordering::Relaxed);
    let part = if share > 0 && !part.is_empty() && rand::rng().random_range(0..1_000_000) < share {
        server.metrics.corrupted.inc();
        corrupted(part)
    } else {
        part
    };
    let stream = paced(server.clone(), part);
    server.answer(status, &hdrs, Body::from_stream(stream))
}

/// `part` with one byte flipped, somewhere in it.
fn corrupted(part: Bytes) -> Bytes {
    let mut v = part.to_vec();
    let at = rand::rng().random_range(0..v.len());
    v[at] ^= 0xff;
    Bytes::from(v)
}

impl Server {
    /// A chunk of a body is on its way: counted.
    fn sent(&self, n: usize) {
        self.metrics.bytes.inc_by(n as u64);
        self.bandwidth_now.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Sets the bandwidth gauge to the bytes served in each whole second.
async fn measure_bandwidth(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let n = server.bandwidth_now.swap(0, Ordering::Relaxed);
        server.metrics.bandwidth.set(n as i64);
    }
}

/// `part` as a body stream whose chunks wait for the server's bandwidth budget.
fn paced(
    server: Arc<Server>,
    part: Bytes,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold((server, part), |(server, mut rest)| async move {
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(limits::CHUNK);
        let chunk = rest.split_to(n);
        let limiter = server.limiter.read().ok().map(|l| l.clone())?;
        let cells = NonZeroU32::new(n as u32)?;
        let _ = limiter.until_n_ready(cells).await;
        server.sent(n);
        Some((Ok(chunk), (server, rest)))
    })
}

/// How often the data directory is checked for a newer manifest.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// Keeps `server`'s catalog at the newest manifest version in `data`.
async fn reload(server: Arc<Server>, data: PathBuf, public: OperatorPublic) {
    let mut held = 0u64;
    let mut failed = 0u64;
    loop {
        let (d, p) = (data.clone(), public.clone());
        let read = tokio::task::spawn_blocking(move || {
            let newest = super::files::versions(&d).last().copied().unwrap_or(0);
            (newest > held && newest != failed).then(|| (newest, Catalog::load(&d, newest, &p)))
        })
        .await;
        match read {
            Ok(Some((v, Ok(catalog)))) => {
                held = v;
                server.set_version(v);
                if let Ok(mut c) = server.catalog.write() {
                    *c = Some(Arc::new(catalog));
                }
                crate::log_line!("resource server: serving manifest version {v}");
            }
            Ok(Some((v, Err(e)))) => {
                failed = v;
                crate::log_line!("resource server: keeping version {held}: {e}");
            }
            _ => {}
        }
        tokio::time::sleep(RELOAD_EVERY).await;
    }
}
