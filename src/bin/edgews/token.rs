//! `edgews token`: mints a token with the configured key, for tests, scripts
//! and dev mode.

use std::time::Duration;

use clap::Args;
use edgews::rooms::auth::{self, Claims, MAX_USER_ID_BYTES};

use crate::serve::{keys, ConfigArgs};
use crate::CliError;

/// Options of `edgews token`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The user id (`sub` claim).
    #[arg(long)]
    sub: String,
    /// Display name (`name` claim).
    #[arg(long)]
    name: Option<String>,
    /// Roles (`roles` claim), comma-separated: admin, moderator.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Lifetime: `90s`, `30m`, `1h`, `7d`, ...
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

/// Prints the token on stdout (alone, for `TOKEN=$(edgews token ...)`).
pub fn run(args: &TokenArgs) -> Result<(), CliError> {
    let cfg = args.config.load()?;
    for (key, set) in [
        (
            "auth.rs256_public_key_file",
            &cfg.auth.rs256_public_key_file,
        ),
        (
            "auth.es256_public_key_file",
            &cfg.auth.es256_public_key_file,
        ),
    ] {
        if let Some(path) = set {
            return Err(CliError::Config(format!(
                "cannot mint tokens: {key} ({}) is a public key, which only verifies. \
                 Sign tokens where the private key is (claims: sub, name, roles, exp)",
                path.display()
            )));
        }
    }
    if args.sub.is_empty() || args.sub.len() > MAX_USER_ID_BYTES {
        return Err(CliError::Config(format!(
            "--sub must be 1 to {MAX_USER_ID_BYTES} bytes"
        )));
    }
    let ttl = args.ttl.as_secs();
    if ttl == 0 || ttl > 10 * 365 * 24 * 3600 {
        return Err(CliError::Config(
            "--ttl must be between 1 second and 10 years".into(),
        ));
    }
    let (keys, dev) = keys(&cfg)?;
    let now = auth::unix_now();
    let claims = Claims {
        sub: args.sub.clone(),
        name: args.name.clone(),
        roles: args
            .roles
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect(),
        exp: Some(now + ttl),
        iat: Some(now),
        iss: cfg.auth.issuer.clone(),
        aud: cfg.auth.audience.clone(),
    };
    let token = keys
        .mint(&claims)
        .map_err(|e| CliError::Run(e.to_string()))?;
    if dev {
        eprintln!(
            "edgews: dev mode: signed with the dev secret in {}",
            cfg.auth.dev_secret_file.display()
        );
    }
    println!("{token}");
    Ok(())
}
