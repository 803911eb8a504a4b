//! Graceful shutdown on SIGINT and SIGTERM.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::error::Error;
use super::handle::ServerHandle;

/// Starts a thread that shuts the server down gracefully on the first SIGINT
/// or SIGTERM, and exits the process at once on the second.
pub fn shutdown_on_signals(handle: ServerHandle) -> Result<(), Error> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).map_err(|e| Error::io("installing signal handlers", e))?;
    std::thread::Builder::new()
        .name("edgews-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
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
