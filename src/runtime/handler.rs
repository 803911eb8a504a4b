//! The embedding API: what an application implements ([`Handler`]) and the
//! values the engine hands it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::protocol::handshake;
use crate::protocol::{CloseCode, Message};

use super::conn::Conn;

/// An application's WebSocket logic. One instance runs on each worker thread
/// (made by the factory given to [`super::Server::bind`]), so `&mut self`
/// needs no locking; share state across workers with `Arc` if you must.
///
/// Every callback runs on the worker's event loop: don't block in it.
///
/// ```
/// use edgews::runtime::{Accept, Conn, Handler, Reject, Request};
/// use edgews::protocol::Message;
///
/// struct Echo;
/// impl Handler for Echo {
///     type Data = u64; // messages seen on this connection
///     fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<u64>, Reject> {
///         if req.path() == "/ws" { Ok(Accept::new(0)) } else { Err(Reject::not_found()) }
///     }
///     fn on_message(&mut self, conn: &mut Conn<'_, u64>, msg: Message<'_>) {
///         *conn.data_mut() += 1;
///         conn.send(msg);
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// Per-connection state, created by [`Handler::on_upgrade`], kept inline
    /// in the connection (use `()` for none).
    type Data: Send + 'static;

    /// Decides on an upgrade request: accept (with the connection's data and
    /// optionally a subprotocol) or reject with an HTTP status.
    fn on_upgrade(&mut self, req: &Request<'_>) -> Result<Accept<Self::Data>, Reject>;

    /// The connection is open (the 101 response is queued).
    fn on_open(&mut self, conn: &mut Conn<'_, Self::Data>) {
        let _ = conn;
    }

    /// A complete text or binary message. It borrows the worker's receive
    /// buffer (no copy): copy what you keep.
    fn on_message(&mut self, conn: &mut Conn<'_, Self::Data>, msg: Message<'_>);

    /// The connection is closing; no more messages will arrive and sends to it
    /// are ignored. [`Conn::rooms`] still lists its rooms, which it leaves
    /// right after this returns; what is published from here reaches every
    /// member but this connection. Called exactly once for every connection
    /// that was opened.
    fn on_close(&mut self, conn: &mut Conn<'_, Self::Data>, close: CloseInfo<'_>) {
        let _ = (conn, close);
    }

    /// The timer set with [`Conn::set_timer`] is due. Runs only while the
    /// connection is open.
    fn on_timer(&mut self, conn: &mut Conn<'_, Self::Data>) {
        let _ = conn;
    }

    /// A payload sent to this connection with [`super::ServerHandle::notify`]
    /// or [`Conn::notify`], from any thread or worker. Runs on the
    /// connection's own worker, only while it is open (not once it started
    /// closing), so the handler can act on it as in any other callback:
    /// leave a room, send, close. Default: ignored.
    fn on_notify(&mut self, conn: &mut Conn<'_, Self::Data>, payload: &[u8]) {
        let _ = (conn, payload);
    }

    /// The connection's send queue went from over the backpressure limit to
    /// empty: a good time to send more.
    fn on_drain(&mut self, conn: &mut Conn<'_, Self::Data>) {
        let _ = conn;
    }

    /// A plain HTTP request (not an upgrade) on the WebSocket port. Default: 404.
    fn on_http(&mut self, req: &Request<'_>) -> HttpResponse {
        let _ = req;
        HttpResponse::not_found()
    }
}

/// Identifies a connection across the whole server: which worker, which
/// slot, and which use of that slot (so a stale id never reaches a newer
/// connection in the same slot).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) worker: u16,
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The index of the worker that owns the connection.
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{}.{})", self.worker, self.key, self.gen)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.worker, self.key, self.gen)
    }
}

/// An HTTP request head as the handler sees it: an upgrade request in
/// [`Handler::on_upgrade`], a plain request in [`Handler::on_http`].
pub struct Request<'a> {
    pub(crate) http: &'a handshake::Request<'a>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) client: Option<IpAddr>,
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.http.method()
    }

    /// The request target, e.g. `/chat?token=abc`.
    pub fn path(&self) -> &'a str {
        self.http.path()
    }

    /// The first header called `name` (case-insensitive), as raw bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.http.header(name)
    }

    /// The first header called `name`, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.http.header_str(name)
    }

    /// All headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        self.http.headers()
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&'a str> {
        self.header_str("origin")
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in order.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.http.tokens("sec-websocket-protocol")
    }

    /// The peer's address, when the socket still knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The client's IP address: the peer's, or, when the peer is one of
    /// [`super::Config::trusted_proxies`], the client it forwards for (the
    /// rightmost untrusted address of `X-Forwarded-For`). This is the address
    /// counted against [`super::Config::max_connections_per_ip`].
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("peer", &self.peer)
            .field("client", &self.client)
            .finish()
    }
}

/// A decision to accept an upgrade.
#[derive(Debug)]
pub struct Accept<D> {
    pub(crate) data: D,
    pub(crate) protocol: Option<Box<str>>,
}

impl<D> Accept<D> {
    /// Accepts, with the connection's initial data.
    pub fn new(data: D) -> Self {
        Accept {
            data,
            protocol: None,
        }
    }

    /// Names the subprotocol chosen from [`Request::protocols`]; it is echoed
    /// in `Sec-WebSocket-Protocol`.
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
}

/// A decision to refuse an upgrade, with the HTTP answer to send.
#[derive(Debug, Clone)]
pub struct Reject {
    pub(crate) response: HttpResponse,
}

impl Reject {
    /// Refuses with `status` and a plain-text `reason` as the body.
    pub fn new(status: u16, reason: &str) -> Self {
        Reject {
            response: HttpResponse::text(status, format!("{reason}\n")),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(reason: &str) -> Self {
        Self::new(400, reason)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(reason: &str) -> Self {
        Self::new(401, reason)
    }

    /// 403 Forbidden (e.g. an origin that is not allowed).
    pub fn forbidden(reason: &str) -> Self {
        Self::new(403, reason)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(404, "not found")
    }

    /// Refuses with a full HTTP response of your own.
    pub fn with_response(response: HttpResponse) -> Self {
        Reject { response }
    }

    /// The status this rejection answers with.
    pub fn status(&self) -> u16 {
        self.response.status
    }
}

/// A complete HTTP response (sent with `Connection: close`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Answer to a HEAD request: the headers of the full response, no body.
    pub(crate) head_only: bool,
}

impl HttpResponse {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: body.into().into_bytes(),
            head_only: false,
        }
    }

    /// A response with an explicit content type.
    pub fn with_type(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
            head_only: false,
        }
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let extra: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        handshake::write_http_response(out, self.status, &self.content_type, &extra, &self.body);
        if self.head_only {
            out.truncate(out.len() - self.body.len());
        }
    }
}

/// Why a connection closed, as passed to [`Handler::on_close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo<'a> {
    /// The close code: the peer's when it closed, ours when we did,
    /// [`CloseCode::ABNORMAL`] (1006) when the connection dropped without one.
    pub code: CloseCode,
    /// The reason text that went with the code.
    pub reason: &'a str,
    /// True when the peer started the close (or dropped the connection).
    pub by_peer: bool,
}
