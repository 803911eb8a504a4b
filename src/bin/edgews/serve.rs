//! `edgews serve`: the room server, and the configuration flags it shares
//! with `edgews token`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use edgews::rooms::auth::{self, Claims, Keys};
use edgews::rooms::server::RoomServer;
use edgews::rooms::RoomServerConfig;

use crate::CliError;

/// Where the configuration comes from: the file, then `EDGEWS_*` variables,
/// then these flags (`--set` in order, then `--profile`, `--listen`,
/// `--workers`).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (every key: edgews.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Defaults to start from: standard, high-throughput or low-memory.
    #[arg(long, value_parser = ["standard", "high-throughput", "low-memory"])]
    profile: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Event-loop threads [default: one per CPU].
    #[arg(long)]
    workers: Option<usize>,
    /// Set any key: `--set max_message_bytes=131072`, `--set rate_limit.burst=80`,
    /// `--set allowed_origins=https://a.example,https://b.example`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

impl ConfigArgs {
    /// The effective configuration: file, the process environment, flags.
    pub fn load(&self) -> Result<RoomServerConfig, CliError> {
        let mut overrides = self.set.clone();
        if let Some(p) = &self.profile {
            overrides.push(("profile".into(), p.clone()));
        }
        if let Some(l) = self.listen {
            overrides.push(("listen".into(), l.to_string()));
        }
        if let Some(w) = self.workers {
            overrides.push(("workers".into(), w.to_string()));
        }
        // Non-UTF-8 variables cannot be EDGEWS_ config; skip them.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Ok(RoomServerConfig::load(
            self.config.as_deref(),
            env,
            &overrides,
        )?)
    }
}

/// Options of `edgews serve`.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

/// The keys `cfg` configures, or dev mode's: the generated secret in
/// `auth.dev_secret_file` (true when in dev mode).
pub fn keys(cfg: &RoomServerConfig) -> Result<(Keys, bool), CliError> {
    if let Some(keys) = Keys::from_config(&cfg.auth).map_err(|e| CliError::Config(e.to_string()))? {
        return Ok((keys, false));
    }
    let (secret, created) = auth::dev_secret(&cfg.auth.dev_secret_file)
        .map_err(|e| CliError::Config(format!("auth.dev_secret_file: {e}")))?;
    if created {
        tracing::info!(file = %cfg.auth.dev_secret_file.display(), "generated a dev-mode HS256 secret");
    }
    Ok((Keys::hs256(secret.as_bytes(), &cfg.auth), true))
}

/// Dev mode with `admin.listen` on a loopback address and no admin token:
/// a generated one, kept next to the dev secret (`dev-admin-token`) so
/// restarts keep it. Returns it, to print.
fn dev_admin_token(
    cfg: &mut RoomServerConfig,
) -> Result<Option<(String, std::path::PathBuf)>, CliError> {
    let a = &cfg.admin;
    let configured = a.token.is_some()
        || a.token_file.is_some()
        || a.read_token.is_some()
        || a.read_token_file.is_some();
    match a.listen {
        Some(addr) if !configured && addr.ip().is_loopback() => {}
        _ => return Ok(None),
    }
    let path = cfg
        .auth
        .dev_secret_file
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join("dev-admin-token");
    let (token, _) = auth::dev_secret(&path)
        .map_err(|e| CliError::Config(format!("dev admin token {}: {e}", path.display())))?;
    cfg.admin.token = Some(token.clone());
    Ok(Some((token, path)))
}

/// Runs the room server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let mut cfg = args.config.load()?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let (keys, dev) = keys(&cfg)?;
    let sample = if dev {
        let claims = Claims {
            sub: "alice".into(),
            name: Some("Alice".into()),
            exp: Some(auth::unix_now() + 24 * 3600),
            iat: Some(auth::unix_now()),
            iss: cfg.auth.issuer.clone(),
            aud: cfg.auth.audience.clone(),
            ..Claims::default()
        };
        Some(
            keys.mint(&claims)
                .map_err(|e| CliError::Run(e.to_string()))?,
        )
    } else {
        None
    };
    let admin_token = if dev {
        dev_admin_token(&mut cfg)?
    } else {
        None
    };
    let dev_secret_file = cfg.auth.dev_secret_file.clone();
    let scheme = if cfg.tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut server = RoomServer::bind(cfg, keys)?;
    let addr = server.local_addr();
    if let Some(token) = sample {
        server = server.with_dev_tokens();
        tracing::warn!(
            secret_file = %dev_secret_file.display(),
            "DEV MODE: no auth key is configured; tokens are signed with a generated secret, \
             anyone on this machine can mint them (GET /dev/token). Configure auth.hs256_secret_file \
             or a public key before serving real users"
        );
        println!("edgews dev mode: a token for user \"alice\" (valid 24 h; more with `edgews token --sub bob --name Bob`):");
        println!("  {token}");
        println!("Try it:  {}://{addr}/ws?token={token}", scheme.0);
        println!("Demo:    {}://{addr}/", scheme.1);
        if let (Some((token, file)), Some(admin)) = (&admin_token, server.admin_addr()) {
            println!("Admin API (a dev admin token, kept in {}):", file.display());
            println!("  curl -H 'Authorization: Bearer {token}' http://{admin}/api/admin/rooms");
        }
    }
    tracing::info!(%addr, "room server listening on {}://{addr}/ws", scheme.0);
    if let Some(admin) = server.admin_addr() {
        tracing::info!(%admin, "admin API listening on http://{admin}/api/admin/");
    }
    // SIGTERM drains: clients are told when to reconnect, then 1001.
    server.drain_on_signals()?;
    server.run()?;
    Ok(())
}
