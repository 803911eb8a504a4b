//! The room server with its limits opened for benchmarks (`benches/rooms.sh`):
//! one worker, no rate limit, no per-IP limit, no pings or idle timeout (the
//! load generator does not answer pings), and a known HS256 secret so the
//! generator can mint tokens.
//!
//! ```sh
//! cargo run --release --example rooms_bench -- 127.0.0.1:8080 SECRET
//! ```
//!
//! Once `edgews serve` takes `--set key=value`, the same settings are
//! `workers=1 max_connections_per_ip=0 rate_limit.messages_per_sec=0
//! ping_interval_secs=0 idle_timeout_secs=0 auth.hs256_secret=SECRET`.

use edgews::rooms::auth::Keys;
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(secret)) = (args.next(), args.next()) else {
        return Err("usage: rooms_bench LISTEN_ADDR HS256_SECRET".into());
    };
    let mut cfg = RoomServerConfig::default();
    cfg.listen = listen.parse()?;
    cfg.workers = 1;
    cfg.max_connections = 100_000;
    cfg.max_connections_per_ip = 0;
    cfg.rate_limit.messages_per_sec = 0;
    cfg.ping_interval_secs = 0;
    cfg.idle_timeout_secs = 0;
    cfg.auth.hs256_secret = Some(secret.clone());
    let keys = Keys::hs256(secret.as_bytes(), &cfg.auth);
    let server = RoomServer::bind(cfg, keys)?;
    edgews::runtime::shutdown_on_signals(server.handle())?;
    server.run()?;
    Ok(())
}
