//! Log set-up: `tracing` to stderr, level from `EDGEWS_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human-readable text, or JSON lines.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("EDGEWS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
