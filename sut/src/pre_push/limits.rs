//! A resource server's bounds: its bandwidth budget, the ranges it honours, and what a
//! connection may cost (how many at once, how long to send a request's head, how long
//! one may live).

use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Bodies go out in chunks of this many bytes, each waiting for its share of the budget.
pub const CHUNK: usize = 16 << 10;
/// Connections a server holds at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// A client has this long to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives, however it behaves (one that stops reading a body
/// is closed by then at the latest).
pub const CONNECTION_LIFE: Duration = Duration::from_secs(300);

pub type Limiter = DefaultDirectRateLimiter;

/// The rate a limiter asked for `bytes_per_second` applies: at least one chunk a
/// second, at most what its quota holds.
pub fn applied(bytes_per_second: u64) -> u64 {
    bytes_per_second.clamp(CHUNK as u64, u32::MAX as u64)
}

/// A limiter letting [`applied`]`(bytes_per_second)` through.
pub fn limiter(bytes_per_second: u64) -> Limiter {
    let rate = applied(bytes_per_second) as u32;
    let burst = (CHUNK as u32 * 4).max(rate / 10);
    let (Some(rate), Some(burst)) = (NonZeroU32::new(rate), NonZeroU32::new(burst)) else {
        unreachable!("both are at least CHUNK")
    };
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// What a `Range` header asks of an item of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Bytes `from` to `to` (exclusive).
    Part(u64, u64),
    /// The whole item (several ranges are answered whole, as HTTP allows).
    Whole,
    Unsatisfiable,
}

pub fn range(header: &str, size: u64) -> Range {
    let Ok(parsed) = http_range_header::parse_range_header(header) else {
        return Range::Unsatisfiable;
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => {
            let r = &ranges[0];
            Range::Part(*r.start(), *r.end() + 1)
        }
        Ok(_) => Range::Whole,
        Err(_) => Range::Unsatisfiable,
    }
}

/// Serves `app` over HTTP/1.1 on `listener` within the bounds above, until `shutdown`.
pub(super) async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFE, conn).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resume_or_fall_back_to_the_whole_item() {
        assert_eq!(range("bytes=100-", 1000), Range::Part(100, 1000));
        assert_eq!(range("bytes=0-9", 1000), Range::Part(0, 10));
        assert_eq!(range("bytes=-10", 1000), Range::Part(990, 1000));
        assert_eq!(range("bytes=0-9, 20-29", 1000), Range::Whole);
        assert_eq!(range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(range("pages=1-2", 1000), Range::Unsatisfiable);
    }
}
