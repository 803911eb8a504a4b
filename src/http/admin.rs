//! The separate admin listener: a blocking thread for the low-traffic
//! health, metrics and status requests, away from the WebSocket port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::protocol::handshake::{header_buf, server};
use crate::protocol::Parse;
use crate::runtime::{Error, HttpResponse, Request, ServerHandle};

/// Largest request head the admin listener reads.
const MAX_REQUEST_BYTES: usize = 8 << 10;
/// How long one admin request may take to arrive or be written.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread checks whether the server has stopped.
const POLL: Duration = Duration::from_millis(200);

/// Binds the admin address (so a bad address fails at start-up).
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::bind(addr, e))?;
    // accept() honours the receive timeout on Linux: it lets the thread look
    // at the stop flag without a busy loop.
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(POLL))
        .map_err(|e| Error::io("setting the admin listener's timeout", e))?;
    Ok(listener)
}

/// Serves the endpoints on `listener` until the server has stopped.
pub(crate) fn spawn(listener: TcpListener, handle: ServerHandle) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name("edgews-admin".into())
        .spawn(move || {
            while !handle.shared.stopped.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = serve(stream, &handle) {
                            tracing::debug!(error = %e, "admin request failed");
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
        .map_err(|e| Error::io("starting the admin thread", e))
}

fn serve(mut stream: TcpStream, handle: &ServerHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr().ok();
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let response = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = header_buf();
        match server::parse_request(&buf[..len], &mut headers, MAX_REQUEST_BYTES) {
            Ok(Parse::Complete((req, _))) => {
                let request = Request {
                    http: &req,
                    peer,
                    client: peer.map(|p| p.ip()),
                };
                break super::respond(&request, handle).unwrap_or_else(HttpResponse::not_found);
            }
            Ok(Parse::Incomplete(_)) if len < buf.len() => continue,
            Ok(Parse::Incomplete(_)) => break HttpResponse::text(431, "request too large\n"),
            Err(e) => break HttpResponse::text(e.status(), format!("{e}\n")),
        }
    };
    let mut out = Vec::with_capacity(256 + response.body.len());
    response.write_to(&mut out);
    stream.write_all(&out)?;
    stream.shutdown(std::net::Shutdown::Write)
}
