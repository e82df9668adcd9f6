//! The control plane between nodes: controller RPCs (`JCTRL001`) and the status document
//! (`JSTAT001`) on the raft address (docs/chain-format.md, "Connections on the raft address").
//!
//! Owns: the control frame codec ([`frame`]), the server that reads requests from peers and
//! writes the answers of a [`ControlHandler`] ([`server`]), the client brokers use to call a
//! peer or the current controller ([`client`]), and the status document ([`status`]).
//! The raft listener (`raft::transport`) reads each connection's preface and hands control and
//! status connections here.
//! Must never: decide anything about metadata (the handler, i.e. the controller runtime, does),
//! serve these APIs on the client listener, or trust a peer's lengths or counts: every frame is
//! bounded by `raft::limits` before it is read, and every peer error closes that connection
//! only.

pub mod client;
pub mod frame;
pub mod server;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

pub use client::{not_controller, ControlClient, RpcError};
pub use server::{ControlServer, StatusSource};
pub use status::{fetch_status, render_status, StatusError};

/// A boxed, sendable future (what `futures::future::BoxFuture` is, without the dependency).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the server does with one request.
// Built and moved once per RPC: boxing the response would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ControlAnswer {
    /// Send this response (it must be the request's API), stamped with the controller's
    /// applied image position when it was built.
    Respond {
        response: ResponseKind,
        metadata_position: u64,
    },
    /// Close the connection without answering (the peer is not to be served).
    Close,
}

/// Serves controller RPCs; the controller runtime implements it.
///
/// `handle` is called once per request, concurrently for requests of one connection (up to
/// `CONTROL_IN_FLIGHT_PER_CONNECTION_MAX`); answers go back as they complete, matched by
/// correlation id. `request` is one of the APIs in [`frame::CONTROL_APIS`] at a version
/// [`frame::control_versions`] allows, and `header` carries that version: the response must be
/// built for it. The returned future is aborted if the connection closes first.
///
/// `connection` identifies the connection the request came on (unique in this process);
/// [`ControlHandler::closed_by_peer`] is called once when the peer ends that connection (EOF or
/// reset; not when this side closes it), after its requests' handlers have finished.
pub trait ControlHandler: Send + Sync + 'static {
    fn handle(
        &self,
        peer: SocketAddr,
        connection: u64,
        header: RequestHeader,
        request: RequestKind,
    ) -> BoxFuture<'static, ControlAnswer>;

    /// The peer closed `connection` (its process may have died: the kernel closes a killed
    /// process's sockets at once).
    fn closed_by_peer(&self, _peer: SocketAddr, _connection: u64) {}
}
