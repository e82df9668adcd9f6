//! The listener: accepts Kafka clients up to `max.connections`, runs the background log
//! ticker, and shuts down cleanly on request.
//!
//! Owns: the process-level lifecycle (bind the HTTP listener, then the Kafka listener, start,
//! ready line, shutdown). The HTTP listener comes first so `/health/live` answers, and
//! `/health/ready` says why not yet, while logs recover. Must never: let one
//! connection's failure affect another, or accept beyond the connection cap (excess
//! connections are closed immediately, logged).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::Config;
use crate::connection;
use crate::limits;
use crate::metrics::Metrics;

/// A started broker: its address and a handle to stop it.
pub struct RunningBroker {
    pub local_addr: SocketAddr,
    /// The HTTP listener's address, if it runs.
    pub http_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
    /// Stops the HTTP listener: last, so probes see "not ready" during the shutdown.
    http_stop: watch::Sender<bool>,
}

impl RunningBroker {
    /// Stops accepting, closes every partition log (flush, clean-shutdown marker).
    pub async fn shutdown(self) {
        self.broker
            .metrics
            .ready
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        self.broker.shutdown().await;
        let _ = self.http_stop.send(true);
    }
}

/// Checks the data directory's identity (before any port is bound), binds, starts the broker,
/// and begins accepting clients. Logs the ready line.
pub async fn start(config: Config) -> anyhow::Result<RunningBroker> {
    crate::metadata::identity::check_and_record(&config)?;
    let metrics = Metrics::new();
    let (http_stop, http_stop_rx) = watch::channel(false);
    let http_addr = match crate::http::bind(config.http_listen).await? {
        Some(l) => {
            let addr = l.local_addr()?;
            tokio::spawn(crate::http::serve(
                l,
                metrics.clone(),
                config.console,
                http_stop_rx,
            ));
            Some(addr)
        }
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let advertised_port = if config.advertise_port == 0 {
        i32::from(local_addr.port())
    } else {
        config.advertise_port
    };
    let broker = Broker::start(config, advertised_port, metrics.clone()).await?;
    metrics.set_broker(&broker);
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(tick_logs(broker.clone(), shutdown_rx.clone()));
    let accept_task = tokio::spawn(accept_loop(listener, broker.clone(), shutdown_rx));
    metrics
        .ready
        .kafka_listener
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        "josefine ready: accepting Kafka clients on {local_addr} (advertised as {}:{}), node {}, data dir {}",
        broker.advertised_host,
        broker.advertised_port,
        broker.config.node_id,
        broker.config.data_dir.display()
    );
    Ok(RunningBroker {
        local_addr,
        http_addr,
        broker,
        shutdown,
        accept_task,
        http_stop,
    })
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(
        broker.config.broker.max_connections as usize,
    ));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!(%peer, max = broker.config.broker.max_connections, "max.connections reached; closing new connection");
            broker.metrics.connections.refused();
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        broker.metrics.connections.opened();
        tokio::spawn(async move {
            let reason = connection::run(stream, peer, broker.clone()).await;
            broker.metrics.connections.closed(reason);
            drop(permit);
        });
    }
}

/// Time-based log work (segment rolls, interval flushes) for every partition.
async fn tick_logs(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(limits::LOG_TICK_INTERVAL_MS));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let partitions = broker.partitions.all();
        broker
            .blocking(move || {
                let now = now_ms();
                for p in partitions {
                    if let Err(e) = p.log.tick(now) {
                        warn!(topic = %p.topic, partition = p.index, "log tick failed: {e}");
                    }
                }
            })
            .await;
    }
}
