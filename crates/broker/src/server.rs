//! The listeners: accept Kafka clients up to `max.connections`, one accept loop per named
//! listener (`listeners`, or the one PLAINTEXT listener of `--listen`); runs the background
//! log ticker, and shuts down cleanly on request.
//!
//! Owns: the process-level lifecycle (bind the HTTP listener, then every Kafka listener, start,
//! ready line, shutdown). The HTTP listener comes first so `/health/live` answers, and
//! `/health/ready` says why not yet, while logs recover. Must never: let one
//! connection's failure affect another, or accept beyond the connection cap (excess
//! connections are closed immediately, logged).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::config::Config;
use crate::connection;
use crate::limits;
use crate::metrics::CloseReason;
use crate::metrics::Metrics;
use crate::security::connections::PerIpCounter;
use crate::security::sasl::SaslServer;
use crate::security::tls::TlsServer;
use crate::security::{Caller, ListenerConfig, Principal};
use josefine_meta::ListenerEndpoint;

/// A started broker: its address and a handle to stop it.
pub struct RunningBroker {
    /// The first listener's bound address (the only one with `--listen`).
    pub local_addr: SocketAddr,
    /// Every listener's name and bound address, in the order configured.
    pub listener_addrs: Vec<(String, SocketAddr)>,
    /// The HTTP listener's address, if it runs.
    pub http_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
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
        for task in self.accept_tasks {
            let _ = task.await;
        }
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
    // Every listener is bound before the broker starts: a taken port fails start-up before
    // anything registers.
    let mut bound = Vec::with_capacity(config.security.listeners.len());
    for l in &config.security.listeners {
        let listener = TcpListener::bind(l.bind).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (listener {}): {e}", l.bind, l.name)
        })?;
        let addr = listener.local_addr()?;
        bound.push((l.clone(), listener, addr));
    }
    // What the broker registers, the inter-broker listener first (its endpoint is the one
    // replicas dial); port 0 advertises the bound port.
    let mut endpoints: Vec<ListenerEndpoint> = bound
        .iter()
        .filter_map(|(l, _, addr)| {
            let (host, port) = l.advertised.clone()?;
            Some(ListenerEndpoint {
                name: l.name.clone(),
                host,
                port: if port == 0 {
                    i32::from(addr.port())
                } else {
                    port
                },
                security_protocol: l.protocol.id(),
            })
        })
        .collect();
    let inter = &config.security.inter_broker_listener;
    endpoints.sort_by_key(|e| e.name != *inter);
    let local_addr = bound[0].2;
    let listener_addrs: Vec<(String, SocketAddr)> =
        bound.iter().map(|(l, _, a)| (l.name.clone(), *a)).collect();
    let broker = Broker::start(config, endpoints, metrics.clone()).await?;
    metrics.set_broker(&broker);
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(tick_logs(broker.clone(), shutdown_rx.clone()));
    let seeds = broker.config.scram_seeds.clone();
    if !seeds.is_empty() {
        tokio::spawn(crate::security::credentials::apply_seeds(
            broker.clone(),
            seeds,
        ));
    }
    // One connection cap for all listeners, as Kafka's `max.connections`.
    let connections = Arc::new(Semaphore::new(
        broker.config.broker.max_connections as usize,
    ));
    let per_ip = PerIpCounter::new(broker.config.security.per_ip.clone());
    let accept_tasks = bound
        .into_iter()
        .map(|(l, listener, _)| {
            tokio::spawn(accept_loop(
                listener,
                l,
                broker.clone(),
                connections.clone(),
                per_ip.clone(),
                shutdown_rx.clone(),
            ))
        })
        .collect();
    metrics
        .ready
        .kafka_listener
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let listening: Vec<String> = listener_addrs
        .iter()
        .map(|(n, a)| format!("{n} on {a}"))
        .collect();
    let advertised: Vec<String> = broker
        .listeners
        .iter()
        .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
        .collect();
    info!(
        "josefine ready: accepting Kafka clients ({}; advertised as {}), node {}, data dir {}",
        listening.join(", "),
        advertised.join(","),
        broker.config.node_id,
        broker.config.data_dir.display()
    );
    Ok(RunningBroker {
        local_addr,
        listener_addrs,
        http_addr,
        broker,
        shutdown,
        accept_tasks,
        http_stop,
    })
}

async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    broker: Arc<Broker>,
    connections: Arc<Semaphore>,
    per_ip: Arc<PerIpCounter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name: Arc<str> = Arc::from(config.name.as_str());
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
        let ip_permit = match per_ip.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(limit) => {
                // No log line per refusal: a flood from one address would flood the log.
                debug!(%peer, listener = %name, limit, "max.connections.per.ip reached; closing new connection");
                broker.metrics.connections.refused();
                drop(stream);
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!(%peer, listener = %name, max = broker.config.broker.max_connections, "max.connections reached; closing new connection");
            broker.metrics.connections.refused();
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        broker.metrics.connections.opened();
        let caller = Caller {
            listener: name.clone(),
            security_protocol: config.protocol,
            principal: Principal::anonymous(),
            peer: Some(peer),
        };
        let tls = config.tls.clone();
        let sasl = config.sasl.clone();
        tokio::spawn(async move {
            let reason = match tls {
                None => connection::run(stream, Arc::new(caller), sasl, broker.clone()).await,
                Some(tls) => serve_tls(stream, caller, tls, sasl, broker.clone()).await,
            };
            broker.metrics.connections.closed(reason);
            drop(permit);
            drop(ip_permit);
        });
    }
}

/// Runs the TLS handshake of a new connection (bounded by `CONNECTION_SETUP_TIMEOUT_MS`),
/// takes the client's principal from its certificate, then serves it like a TCP connection.
/// A failed handshake (plaintext or garbage on a TLS port, an untrusted certificate) closes
/// the connection with one log line.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    mut caller: Caller,
    tls: TlsServer,
    sasl: Option<SaslServer>,
    broker: Arc<Broker>,
) -> CloseReason {
    let _ = stream.set_nodelay(true);
    let peer = caller.peer;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let setup = Duration::from_millis(limits::CONNECTION_SETUP_TIMEOUT_MS);
    let stream = match tokio::time::timeout(setup, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(?peer, listener = %caller.listener, "TLS handshake failed: {e}; closing");
            return CloseReason::Protocol;
        }
        Err(_) => {
            info!(?peer, listener = %caller.listener, "TLS handshake not completed within {} ms; closing", setup.as_millis());
            return CloseReason::Idle;
        }
    };
    let principal = tls.principal(stream.get_ref().1.peer_certificates());
    let Some(principal) = principal else {
        warn!(?peer, listener = %caller.listener, "no ssl.principal.mapping.rules rule applies to the client certificate; closing");
        return CloseReason::Protocol;
    };
    caller.principal = principal;
    let (reader, writer) = tokio::io::split(stream);
    connection::serve(reader, writer, Arc::new(caller), sasl, broker).await
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
                    if let Err(e) = p.log.tick_with(now, crate::metrics::timed_flush) {
                        warn!(topic = %p.topic, partition = p.index, "log tick failed: {e}");
                    }
                }
            })
            .await;
    }
}
