//! The config service (`sut config`): the live timeline's push source, run in two
//! instances. It keeps the newest signed schedule version the operator published to
//! it (on its own disk, so a restart resumes from it) and answers gateways that watch
//! it as soon as it holds a version above theirs: the push channel, as a long poll
//! over the internal RPC.
//!
//! It checks every version with the operator's public key and keeps only newer ones,
//! so a duplicated, late or forged publish changes nothing.

use crate::metrics::{labels, prefill, Counters};
use crate::rpc::{self, Rpc};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use sut_wire::schedule::{OperatorPublic, SignedSchedule};
use sut_wire::signing::SigningKey;
use tokio::sync::watch;

/// How long a watch is held before it is answered "nothing newer": well below the
/// gateways' call timeout ([`WATCH_CALL_TIMEOUT`]).
pub const WATCH_HOLD: Duration = Duration::from_secs(5);
/// A gateway's timeout for one watch call.
pub const WATCH_CALL_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct ConfigServiceConfig {
    pub name: String,
    pub listen: String,
    pub metrics: Option<String>,
    /// Where it keeps the version it holds (`schedule.json`).
    pub dir: PathBuf,
    pub public: OperatorPublic,
    pub rpc_key: SigningKey,
}

struct Service {
    public: OperatorPublic,
    file: PathBuf,
    held: watch::Sender<Option<(u64, SignedSchedule)>>,
    version: Gauge,
    publishes: Counters,
    watches: Counters,
}

/// Runs the service until `shutdown`.
pub async fn run(
    config: ConfigServiceConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), crate::listen::ListenError> {
    let file = config.dir.join("schedule.json");
    let _ = std::fs::create_dir_all(&config.dir);
    let held = std::fs::read(&file)
        .ok()
        .and_then(|b| SignedSchedule::from_json(&b).ok())
        .and_then(|s| config.public.verify(&s).ok().map(|v| (v.version, s)));
    let mut registry = Registry::default();
    let service = Arc::new(Service {
        public: config.public.clone(),
        file,
        version: Gauge::default(),
        publishes: Counters::default(),
        watches: Counters::default(),
        held: watch::channel(held.clone()).0,
    });
    service.version.set(held.map_or(0, |(v, _)| v as i64));
    prefill(
        &service.publishes,
        "result",
        &["applied", "repeat", "older", "refused"],
    );
    prefill(&service.watches, "result", &["sent", "held"]);
    registry.register(
        "sut_config_schedule_version",
        "Schedule version this config service holds (0: none published to it yet)",
        service.version.clone(),
    );
    registry.register(
        "sut_config_publishes",
        "Versions published to this service, by result (applied, repeat, older, refused: not signed by the operator)",
        service.publishes.clone(),
    );
    registry.register(
        "sut_config_watches",
        "Watches answered, by result (sent: a newer version; held: nothing newer in time)",
        service.watches.clone(),
    );
    let refused = crate::metrics::rpc_refused(&mut registry);
    crate::listen::serve_metrics(config.metrics.as_deref(), registry).await?;
    let listener = crate::listen::bind(&config.listen).await?;
    crate::log_line!(
        "config service {} listening on {}",
        config.name,
        config.listen
    );
    rpc::serve(
        listener,
        config.rpc_key,
        refused,
        shutdown,
        move |request| {
            let s = service.clone();
            async move { s.handle(request).await }
        },
    )
    .await;
    crate::log_line!("config service {} stopped", config.name);
    Ok(())
}

impl Service {
    fn held_version(&self) -> u64 {
        self.held.borrow().as_ref().map_or(0, |(v, _)| *v)
    }

    async fn handle(&self, request: Rpc) -> Rpc {
        match request {
            Rpc::PublishSchedule { signed } => self.publish(signed),
            Rpc::WatchSchedule { have } => self.watch(have).await,
            other => Rpc::Failed {
                message: format!("a config service does not take {other:?}"),
            },
        }
    }

    fn publish(&self, signed: SignedSchedule) -> Rpc {
        let result = match self.public.verify(&signed) {
            Err(e) => {
                self.count_publish("refused");
                return Rpc::Failed {
                    message: format!("refused: {e}"),
                };
            }
            Ok(s) if s.version > self.held_version() => {
                // Kept on disk first: a restart never goes back to an older version.
                if let Err(e) = crate::files::write_atomic(&self.file, &signed.to_json()) {
                    crate::log_line!("config service: {e}; holding the version in memory only");
                }
                self.version.set(s.version as i64);
                self.held.send_replace(Some((s.version, signed)));
                "applied"
            }
            Ok(s) if s.version == self.held_version() => "repeat",
            Ok(_) => "older",
        };
        self.count_publish(result);
        Rpc::ScheduleHeld {
            version: self.held_version(),
        }
    }

    fn count_publish(&self, result: &str) {
        self.publishes
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    async fn watch(&self, have: u64) -> Rpc {
        let mut rx = self.held.subscribe();
        let newer = async {
            loop {
                if let Some((v, signed)) = rx.borrow_and_update().as_ref() {
                    if *v > have {
                        return signed.clone();
                    }
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(WATCH_HOLD, newer).await {
            Ok(signed) => {
                self.watches
                    .get_or_create(&labels(&[("result", "sent")]))
                    .inc();
                Rpc::Schedule { signed }
            }
            Err(_) => {
                self.watches
                    .get_or_create(&labels(&[("result", "held")]))
                    .inc();
                Rpc::ScheduleHeld {
                    version: self.held_version(),
                }
            }
        }
    }
}
