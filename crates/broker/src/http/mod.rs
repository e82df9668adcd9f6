//! The HTTP listener: `/metrics` (OpenMetrics), `/health/live`, `/health/ready`, the JSON API
//! (`/api/v1/`) and the web console (`/`).
//!
//! Owns: binding `--http-listen` (before the data directory opens, so probes answer while logs
//! recover), serving HTTP/1.1 with hyper under the limits in [`crate::limits`] (head size, body
//! size, connection count, request deadline), the route table, refusing a foreign `Host` on a
//! loopback listener (DNS rebinding: a web page must not read a local broker's metrics) and a
//! mutation whose `Origin` is not this listener (CSRF), and `--console` (off: no API or
//! console; read-only: mutations get 403).
//! Must never: slow the Kafka listener (it runs its own tasks, reads only atomics, watches and
//! the registry's read lock; the API's Kafka calls go through the same handlers as a client's),
//! change state other than through a Kafka handler, or take the default port from another
//! broker on the same machine by force (a taken default is a warning; a taken explicit address
//! is an error naming the flag).

pub mod api;
pub mod assets;
pub mod chain;
pub mod health;
pub mod kafka;
pub mod messages;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HOST,
    IF_NONE_MATCH, ORIGIN, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::config::{ConsoleMode, HttpListen};
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
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    console: ConsoleMode,
    mut stop: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!("HTTP listener has no address: {e}");
            return;
        }
    };
    info!(
        "HTTP listener on http://{local} (/metrics, /health/live, /health/ready; console {})",
        match console {
            ConsoleMode::Off => "off",
            ConsoleMode::ReadOnly => "read-only at /",
            ConsoleMode::ReadWrite => "read-write at /",
        }
    );
    let slots = Arc::new(Semaphore::new(limits::HTTP_CONNECTIONS_MAX));
    let site = Arc::new(Site {
        local,
        metrics,
        console,
    });
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

/// What every request needs: the listener's address (Host check), the metrics (and through
/// them the broker) and the console mode.
struct Site {
    local: SocketAddr,
    metrics: Arc<Metrics>,
    console: ConsoleMode,
}

impl Site {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        if !self.host_allowed(req.headers().get(HOST)) {
            return text(StatusCode::FORBIDDEN, "foreign Host refused\n");
        }
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        let if_none_match = req.headers().get(IF_NONE_MATCH).cloned();
        let route = match path.as_str() {
            "/metrics" => Route::Metrics,
            "/health/live" => Route::Live,
            "/health/ready" => Route::Ready,
            p if self.console != ConsoleMode::Off => match p.strip_prefix("/api/v1/") {
                Some(rest) => Route::Api(rest.to_string()),
                None => match assets::find(p) {
                    Some((asset, etag)) => Route::Asset(asset, etag),
                    None => return text(StatusCode::NOT_FOUND, "not found\n"),
                },
            },
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        };
        let mutation = matches!(route, Route::Api(_)) && api::is_mutation(&method);
        if mutation && !self.origin_allowed(req.headers().get(ORIGIN), req.headers().get(HOST)) {
            return json(
                StatusCode::FORBIDDEN,
                "{\"error\":\"FOREIGN_ORIGIN\",\"message\":\"a mutation must come from the console's own origin\"}\n".into(),
            );
        }
        if !matches!(route, Route::Api(_)) && method != Method::GET && method != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        // Bodies are read (bounded in size and time) even where unused, so a kept-alive
        // connection stays usable and an oversized one is told so.
        let deadline = Duration::from_millis(limits::HTTP_REQUEST_TIMEOUT_MS);
        let body = Limited::new(req.into_body(), limits::HTTP_BODY_BYTES_MAX);
        let body = match tokio::time::timeout(deadline, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
            }
            Ok(Err(_)) | Err(_) => {
                return text(StatusCode::REQUEST_TIMEOUT, "request body not received\n");
            }
        };
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
            Route::Asset(asset, etag) => {
                let fresh = if_none_match.is_some_and(|v| v.as_bytes() == etag.as_bytes());
                let mut r = if fresh {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::NOT_MODIFIED;
                    r
                } else {
                    let mut r = Response::new(Full::new(Bytes::from_static(asset.bytes)));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
                    r
                };
                let h = r.headers_mut();
                h.insert(ETAG, HeaderValue::from_static(etag));
                // Revalidate each load: a new binary serves new files at once.
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                h.insert(
                    CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(assets::CSP),
                );
                h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                r
            }
            Route::Api(rest) => {
                let Some(broker) = self.metrics.broker() else {
                    return json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{\"error\":\"STARTING\",\"message\":\"the broker is starting\"}\n".into(),
                    );
                };
                let read_write = self.console == ConsoleMode::ReadWrite;
                let a = api::answer(&broker, read_write, &method, &rest, &query, &body).await;
                let mut out = a.body.to_string();
                out.push('\n');
                let mut r = json(a.status, out);
                if a.status == StatusCode::METHOD_NOT_ALLOWED {
                    r.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET, HEAD, POST, DELETE"));
                }
                r
            }
        }
    }

    /// A mutation's `Origin`, when sent (browsers always send it on POST and DELETE), must be
    /// this listener as the browser reached it (`http://` + its `Host`): another site's page
    /// posting here is refused (CSRF). Non-browser clients (curl, scripts) send none.
    fn origin_allowed(&self, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin else { return true };
        let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else {
            return false;
        };
        origin.strip_prefix("http://") == Some(host)
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
    /// `/api/v1/` and what follows.
    Api(String),
    /// A console file and its ETag.
    Asset(&'static assets::Asset, &'static str),
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
