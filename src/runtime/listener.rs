//! Listening sockets: one per worker on the same address (SO_REUSEPORT), so
//! the kernel spreads new connections over the workers without a shared
//! accept queue or lock.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may hold per listener.
const BACKLOG: i32 = 4096;

/// Binds a non-blocking listener with SO_REUSEADDR and SO_REUSEPORT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}
