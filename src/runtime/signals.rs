//! Graceful shutdown on SIGINT and SIGTERM; SIGHUP never ends the server.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::error::Error;
use super::handle::ServerHandle;

/// Starts a thread that shuts the server down gracefully on the first SIGINT
/// or SIGTERM, and exits the process at once on the second.
///
/// It also takes SIGHUP, whose default action would end the process:
/// `systemctl reload` sends it, and the TLS certificate reload
/// ([`super::tls::reload_on_sighup`]) hears it on its own when TLS is
/// configured. Without TLS there is nothing to reload and the server keeps
/// serving.
pub fn shutdown_on_signals(handle: ServerHandle) -> Result<(), Error> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("installing signal handlers", e))?;
    std::thread::Builder::new()
        .name("edgews-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("SIGHUP: reload requested (only a TLS certificate reloads)");
                    continue;
                }
                if handle.is_shutting_down() {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(130);
                }
                tracing::info!(
                    signal = sig,
                    "shutting down gracefully (signal again to force)"
                );
                handle.shutdown();
            }
        })
        .map_err(|e| Error::io("starting the signal thread", e))?;
    Ok(())
}
