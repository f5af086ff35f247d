//! The phones' pre-downloads: one thread per worker, with a single-threaded runtime,
//! running at most `concurrent` downloads at a time over the worker's online users.
//!
//! A phone's session: one HTTP/1.1 connection to a resource server (its home server,
//! the next one after each failure), the manifest asked with `If-None-Match` (a 304
//! when nothing changed), then each item it lacks, resumed with `Range`/`If-Range`
//! when a cut left part of it, read under the phone's bandwidth cap and hashed as it
//! arrives, never stored. Downloads wait while a round is on (the phone is busy with
//! the show) and after a failure, for the back-off the core says.

use super::shared::{Shared, MAX_TRACKED};
use super::stats::PrePushStats;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_RANGE, ETAG, HOST, IF_NONE_MATCH, IF_RANGE, RANGE};
use hyper::{Request, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sut_core::pre_push::download::{Download, Finished, Next};
use sut_wire::resource_manifest::{ResourceManifest, SignedManifest, MAX_SIGNED_LEN};
use sut_wire::schedule::OperatorPublic;

/// How long a connection may take to open, and a response to start or to send its
/// next bytes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the scheduler looks for phones to start.
const TICK: Duration = Duration::from_millis(50);
/// How long a phone waits when a round began before it looks again.
const ROUND_WAIT: Duration = Duration::from_millis(500);

/// What the phones need to know.
#[derive(Clone)]
pub struct PhoneConfig {
    pub servers: Vec<SocketAddr>,
    pub public: OperatorPublic,
    pub user_bandwidth: u64,
    pub concurrent: usize,
    pub manifest_poll: Duration,
    pub verify: bool,
    /// User ids by slot.
    pub users: Vec<u64>,
    pub seed: u64,
}

struct Phone {
    download: Download,
    next_at: Duration,
    busy: bool,
    /// Failures so far: each moves the phone to the next server.
    moves: u32,
}

struct Ctx {
    shared: Arc<Shared>,
    config: PhoneConfig,
    phones: RefCell<Vec<Phone>>,
    /// Manifests adopted, by version; and those verified, by the hash of their bytes
    /// (each distinct body is checked once).
    manifests: RefCell<BTreeMap<u64, Arc<ResourceManifest>>>,
    verified: RefCell<HashMap<[u8; 32], Option<Arc<ResourceManifest>>>>,
    active: Cell<usize>,
    epoch: Instant,
    rng: RefCell<SmallRng>,
}

/// Why a session ended early.
enum Stop {
    /// Failed: counted under `error/KIND` and backed off.
    Failed(&'static str),
    /// A round began: wait, keep what arrived.
    Round,
}

type Conn = SendRequest<Empty<Bytes>>;

/// Runs the phones until the worker sets `shared.stop`.
pub fn run(shared: Arc<Shared>, config: PhoneConfig) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let n = config.users.len();
    let ctx = Rc::new(Ctx {
        phones: RefCell::new(
            (0..n)
                .map(|_| Phone {
                    download: Download::default(),
                    next_at: Duration::ZERO,
                    busy: false,
                    moves: 0,
                })
                .collect(),
        ),
        rng: RefCell::new(SmallRng::seed_from_u64(config.seed)),
        shared,
        config,
        manifests: RefCell::default(),
        verified: RefCell::default(),
        active: Cell::new(0),
        epoch: Instant::now(),
    });
    local.block_on(&runtime, schedule(ctx));
    Ok(())
}

/// Starts sessions for online phones that are due, while there is room.
async fn schedule(ctx: Rc<Ctx>) {
    let n = ctx.config.users.len();
    let mut cursor = 0;
    while !ctx.shared.stop.load(Ordering::Relaxed) {
        let now = ctx.epoch.elapsed();
        let mut looked = 0;
        while looked < n && ctx.active.get() < ctx.config.concurrent && !ctx.shared.round_on() {
            let slot = cursor;
            cursor = (cursor + 1) % n;
            looked += 1;
            let due = {
                let phones = ctx.phones.borrow();
                let p = &phones[slot];
                !p.busy && now >= p.next_at && ctx.shared.is_online(slot)
            };
            if due {
                ctx.phones.borrow_mut()[slot].busy = true;
                ctx.active.set(ctx.active.get() + 1);
                tokio::task::spawn_local(session(ctx.clone(), slot));
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// One phone's session, and what it leaves for the next one.
async fn session(ctx: Rc<Ctx>, slot: usize) {
    let moves = ctx.phones.borrow()[slot].moves as usize;
    let n = ctx.config.servers.len();
    let home = (sut_core::spread::spread(ctx.config.users[slot]) % n as u64) as usize;
    let server = ctx.config.servers[(home + moves % n) % n];
    let ended = work(&ctx, slot, server).await;
    let now = ctx.epoch.elapsed();
    let roll: f64 = ctx.rng.borrow_mut().random();
    let mut phones = ctx.phones.borrow_mut();
    let phone = &mut phones[slot];
    phone.next_at = match ended {
        Ok(()) => now + ctx.config.manifest_poll,
        Err(Stop::Round) => now + ROUND_WAIT,
        Err(Stop::Failed(kind)) => {
            ctx.shared.count(|c| {
                c.status(&format!("error/{kind}"));
                c.retries += 1;
            });
            phone.moves = phone.moves.wrapping_add(1);
            now + phone.download.failed(now, roll)
        }
    };
    phone.busy = false;
    ctx.active.set(ctx.active.get() - 1);
}

/// Brings the phone's holding up to the newest manifest: `Ok` when it holds every
/// item.
async fn work(ctx: &Ctx, slot: usize, server: SocketAddr) -> Result<(), Stop> {
    let mut conn = connect(server).await?;
    let host = server.to_string();
    refresh_manifest(ctx, slot, &mut conn, &host).await?;
    loop {
        if ctx.shared.round_on() {
            return Err(Stop::Round);
        }
        let version = ctx.phones.borrow()[slot].download.version();
        let Some(m) = ctx.manifests.borrow().get(&version).cloned() else {
            return Err(Stop::Failed("no_manifest"));
        };
        let next = ctx.phones.borrow()[slot]
            .download
            .next(&m, ctx.epoch.elapsed());
        match next {
            Next::Complete => return Ok(()),
            Next::Wait(_) => return Err(Stop::Round),
            Next::Fetch { index, from } => {
                fetch_item(ctx, slot, &mut conn, &host, &m, (index, from)).await?
            }
        }
    }
}

async fn connect(server: SocketAddr) -> Result<Conn, Stop> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(server))
        .await
        .map_err(|_| Stop::Failed("timeout"))?
        .map_err(|_| Stop::Failed("connect"))?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| Stop::Failed("connect"))?;
    tokio::task::spawn_local(conn);
    Ok(sender)
}

/// Sends a GET for `path` with `headers`; the response's head.
async fn get(
    conn: &mut Conn,
    host: &str,
    path: &str,
    headers: &[(hyper::header::HeaderName, String)],
) -> Result<hyper::Response<hyper::body::Incoming>, Stop> {
    let mut req = Request::get(path)
        .header(HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|_| Stop::Failed("request"))?;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            req.headers_mut().insert(name.clone(), v);
        }
    }
    conn.ready().await.map_err(|_| Stop::Failed("cut"))?;
    tokio::time::timeout(READ_TIMEOUT, conn.send_request(req))
        .await
        .map_err(|_| Stop::Failed("timeout"))?
        .map_err(|_| Stop::Failed("cut"))
}

/// Asks for the manifest (`If-None-Match` the version held) and adopts a newer one.
async fn refresh_manifest(ctx: &Ctx, slot: usize, conn: &mut Conn, host: &str) -> Result<(), Stop> {
    let have = ctx.phones.borrow()[slot].download.version();
    let headers = if have > 0 {
        vec![(IF_NONE_MATCH, format!("\"m{have}\""))]
    } else {
        vec![]
    };
    let resp = get(conn, host, "/manifest", &headers).await?;
    let status = resp.status();
    ctx.shared.count(|c| c.status(status.as_str()));
    if status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    if status != StatusCode::OK {
        return Err(Stop::Failed("manifest_status"));
    }
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    while let Some(frame) = next_frame(&mut incoming).await? {
        ctx.shared.count(|c| c.bytes += frame.len() as u64);
        if body.len() + frame.len() > MAX_SIGNED_LEN {
            return Err(Stop::Failed("manifest_too_large"));
        }
        body.extend_from_slice(&frame);
    }
    let Some(m) = verified(ctx, &body) else {
        ctx.shared.count(|c| c.manifests_refused += 1);
        return Err(Stop::Failed("manifest_refused"));
    };
    if m.version > have {
        let old = ctx.manifests.borrow().get(&have).cloned();
        let mut phones = ctx.phones.borrow_mut();
        let d = &mut phones[slot].download;
        let kept = d.adopt(old.as_deref(), &m);
        ctx.shared.publish(slot, d.version(), d.held(), d.tainted());
        ctx.shared.count(|c| {
            c.manifests_adopted += 1;
            if have > 0 {
                c.items_kept_on_update += kept as u64;
            }
        });
    }
    Ok(())
}

/// The manifest these bytes carry, when they verify (checked once per distinct body).
fn verified(ctx: &Ctx, body: &[u8]) -> Option<Arc<ResourceManifest>> {
    let mut key = [0u8; 32];
    key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    if let Some(m) = ctx.verified.borrow().get(&key) {
        return m.clone();
    }
    let m = SignedManifest::from_json(body)
        .ok()
        .and_then(|s| ctx.config.public.verify_manifest(&s).ok())
        .filter(|m| m.items.len() <= MAX_TRACKED)
        .map(Arc::new);
    if let Some(m) = &m {
        ctx.manifests.borrow_mut().insert(m.version, m.clone());
        ctx.shared.add_manifest(m.clone());
    }
    ctx.verified.borrow_mut().insert(key, m.clone());
    m
}

async fn next_frame(body: &mut hyper::body::Incoming) -> Result<Option<Bytes>, Stop> {
    loop {
        match tokio::time::timeout(READ_TIMEOUT, body.frame()).await {
            Err(_) => return Err(Stop::Failed("timeout")),
            Ok(None) => return Ok(None),
            Ok(Some(Err(_))) => return Err(Stop::Failed("cut")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Fetches item `index` of `m` from byte `from`, hashing it as it arrives.
async fn fetch_item(
    ctx: &Ctx,
    slot: usize,
    conn: &mut Conn,
    host: &str,
    m: &ResourceManifest,
    (index, from): (usize, u64),
) -> Result<(), Stop> {
    let item = &m.items[index];
    let mut headers = Vec::new();
    if from > 0 {
        headers.push((RANGE, format!("bytes={from}-")));
        headers.push((IF_RANGE, item.etag()));
    }
    let resp = get(conn, host, &format!("/items/{}", item.id), &headers).await?;
    let status = resp.status();
    ctx.shared.count(|c| c.status(status.as_str()));
    let etag_ok = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| e == item.etag());
    let start = match status {
        StatusCode::OK => 0,
        StatusCode::PARTIAL_CONTENT => {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(from) {
                return Err(Stop::Failed("bad_range"));
            }
            ctx.shared.count(|c| c.resumed += 1);
            from
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // What the phone holds of it is not what the server has: start over.
            ctx.phones.borrow_mut()[slot].download.begin(index, 0);
            return Ok(());
        }
        _ => return Err(Stop::Failed("item_status")),
    };
    if !etag_ok {
        // The server holds another version of the item (it has not reloaded yet).
        return Err(Stop::Failed("item_version"));
    }
    ctx.phones.borrow_mut()[slot].download.begin(index, start);
    read_body(ctx, slot, resp.into_body(), item.size).await?;
    let finished = {
        let mut phones = ctx.phones.borrow_mut();
        let d = &mut phones[slot].download;
        let f = d.finish(m, ctx.config.verify);
        ctx.shared.publish(slot, d.version(), d.held(), d.tainted());
        f
    };
    ctx.shared.count(|c| count_finished(c, finished));
    Ok(())
}

fn count_finished(c: &mut PrePushStats, f: Option<Finished>) {
    match f {
        Some(Finished::Verified) => c.items_verified += 1,
        Some(Finished::Refused) => c.tampered_refused += 1,
        Some(Finished::Tainted) => c.tampered_kept += 1,
        Some(Finished::WrongSize) => c.wrong_size += 1,
        None => {}
    }
}

/// Reads a body into the phone's digest under its bandwidth cap, stopping (keeping
/// what arrived) when a round begins; more bytes than the item has end the read.
async fn read_body(
    ctx: &Ctx,
    slot: usize,
    mut body: hyper::body::Incoming,
    size: u64,
) -> Result<(), Stop> {
    let began = Instant::now();
    let mut got = 0u64;
    while let Some(data) = next_frame(&mut body).await? {
        let past_end = {
            let mut phones = ctx.phones.borrow_mut();
            let d = &mut phones[slot].download;
            let room = size.saturating_sub(d.offset()) as usize;
            // A longer body than the item is judged by what it sent (wrong size),
            // and not read further.
            d.received(&data[..data.len().min(room + 1)]);
            d.offset() > size
        };
        if past_end {
            ctx.shared.count(|c| c.bytes += data.len() as u64);
            return Ok(());
        }
        got += data.len() as u64;
        ctx.shared.count(|c| c.bytes += data.len() as u64);
        let due = Duration::from_secs_f64(got as f64 / ctx.config.user_bandwidth as f64);
        if let Some(wait) = due.checked_sub(began.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        // A round pauses what is left; the item's last bytes are judged at once.
        let left = size > ctx.phones.borrow()[slot].download.offset();
        if left && ctx.shared.round_on() {
            return Err(Stop::Round);
        }
    }
    Ok(())
}
