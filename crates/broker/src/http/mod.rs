//! The HTTP listener: `/metrics` (OpenMetrics), `/health/live`, `/health/ready`.
//!
//! Owns: binding `--http-listen` (before the data directory opens, so probes answer while logs
//! recover), serving HTTP/1.1 with hyper under the limits in [`crate::limits`] (head size, body
//! size, connection count, request deadline), the route table, and refusing a foreign `Host`
//! on a loopback listener (DNS rebinding: a web page must not read a local broker's metrics).
//! Must never: slow the Kafka listener (it runs its own tasks, reads only atomics, watches and
//! the registry's read lock), answer a mutation (nothing here changes state), or take the
//! default port from another broker on the same machine by force (a taken default is a
//! warning; a taken explicit address is an error naming the flag).

pub mod health;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::config::HttpListen;
use crate::limits;
use crate::metrics::Metrics;

/// OpenMetrics 1.0, what prometheus-client writes (Prometheus asks for it in its Accept).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `--http-listen`. `Ok(None)`: off, or the default address is taken (logged once).
pub async fn bind(listen: HttpListen) -> anyhow::Result<Option<TcpListener>> {
    let HttpListen::On { addr, explicit } = listen else {
        return Ok(None);
    };
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !explicit => {
            warn!(
                "HTTP listener not started: the default --http-listen {addr} is unavailable ({e}); \
                 running without /metrics and /health (give --http-listen ADDR or off)"
            );
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot listen on --http-listen {addr}: {e}"
        )),
    }
}

/// Serves the bound listener until `stop` turns true or its sender drops.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!("HTTP listener has no address: {e}");
            return;
        }
    };
    info!("HTTP listener on http://{local} (/metrics, /health/live, /health/ready)");
    let slots = Arc::new(Semaphore::new(limits::HTTP_CONNECTIONS_MAX));
    let site = Arc::new(Site { local, metrics });
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "HTTP connection limit reached; closing");
            continue;
        };
        let site = site.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(site.answer(req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(limits::HTTP_REQUEST_TIMEOUT_MS))
                .max_buf_size(limits::HTTP_HEADER_BYTES_MAX.max(8192))
                .max_header_size(limits::HTTP_HEADER_BYTES_MAX);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    debug!(%peer, "HTTP connection ended: {e}");
                },
                _ = stopped(&mut stop) => {}
            }
            drop(slot);
        });
    }
}

/// Resolves once `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

type Body = Full<Bytes>;

/// What every request needs: the listener's address (Host check) and the metrics.
struct Site {
    local: SocketAddr,
    metrics: Arc<Metrics>,
}

impl Site {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        if !self.host_allowed(req.headers().get(HOST)) {
            return text(StatusCode::FORBIDDEN, "foreign Host refused\n");
        }
        let route = match req.uri().path() {
            "/metrics" => Route::Metrics,
            "/health/live" => Route::Live,
            "/health/ready" => Route::Ready,
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        // No route takes a body; one is still read (bounded in size and time) so a
        // kept-alive connection stays usable and an oversized one is told so.
        let deadline = Duration::from_millis(limits::HTTP_REQUEST_TIMEOUT_MS);
        let body = Limited::new(req.into_body(), limits::HTTP_BODY_BYTES_MAX);
        match tokio::time::timeout(deadline, body.collect()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
            Ok(Err(_)) | Err(_) => {
                return text(StatusCode::REQUEST_TIMEOUT, "request body not received\n");
            }
        }
        match route {
            Route::Metrics => {
                let metrics = self.metrics.clone();
                // Rendering walks every partition: off the async workers.
                let text = tokio::task::spawn_blocking(move || metrics.render())
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                let mut r = Response::new(Full::new(Bytes::from(text)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
                r
            }
            Route::Live => json(StatusCode::OK, "{\"status\":\"live\"}\n".into()),
            Route::Ready => {
                let report = health::readiness(&self.metrics);
                let status = if report.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, report.to_json())
            }
        }
    }

    /// A loopback listener answers only requests naming a loopback host (or none, as HTTP/1.0
    /// probes send): a foreign name means a browser was pointed here by DNS rebinding. A
    /// listener on another address is reached by whatever name the network gives it.
    fn host_allowed(&self, host: Option<&HeaderValue>) -> bool {
        if !self.local.ip().is_loopback() {
            return true;
        }
        let Some(host) = host else { return true };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

enum Route {
    Metrics,
    Live,
    Ready,
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
