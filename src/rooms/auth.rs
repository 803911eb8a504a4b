//! Tokens: JWT verification (HS256 secret, or an RS256/ES256 public key),
//! minting (`edgews token`, dev mode) and dev mode's generated secret.
//!
//! Claims: `sub` (the user id, required), optional `name`, `roles`
//! (`admin`, `moderator`, ...), `exp`, and `iss`/`aud` when configured.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::config::AuthConfig;

/// Longest user id (`sub`) and display name accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest display name kept, in bytes (longer ones are cut at a char boundary).
pub const MAX_NAME_BYTES: usize = 128;

/// The claims edgews reads from a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Display name (defaults to the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles, e.g. `admin`, `moderator`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Role bits kept per user.
pub mod role {
    /// `admin`: every permission.
    pub const ADMIN: u8 = 1;
    /// `moderator`: moderation in every room.
    pub const MODERATOR: u8 = 2;
}

impl Claims {
    /// The role bits of `roles` (unknown roles are ignored).
    pub fn role_bits(&self) -> u8 {
        self.roles.iter().fold(0, |bits, r| match r.as_str() {
            "admin" => bits | role::ADMIN,
            "moderator" => bits | role::MODERATOR,
            _ => bits,
        })
    }

    /// The display name: `name` (cut to [`MAX_NAME_BYTES`] at a character
    /// boundary), or the id when there is none.
    pub fn display_name(&self) -> &str {
        let name = self
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.sub);
        let mut end = name.len().min(MAX_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        &name[..end]
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthErrorKind {
    Expired,
    Invalid,
    Config,
}

impl AuthError {
    fn invalid(message: impl Into<String>) -> Self {
        AuthError {
            kind: AuthErrorKind::Invalid,
            message: message.into(),
        }
    }

    fn config(message: impl Into<String>) -> Self {
        AuthError {
            kind: AuthErrorKind::Config,
            message: message.into(),
        }
    }

    /// The token was valid but has expired.
    pub fn is_expired(&self) -> bool {
        self.kind == AuthErrorKind::Expired
    }

    /// The key configuration is wrong (a file missing, a bad PEM, ...).
    pub fn is_config(&self) -> bool {
        self.kind == AuthErrorKind::Config
    }

    /// A short label for metrics: `expired`, `invalid` or `config`.
    pub fn label(&self) -> &'static str {
        match self.kind {
            AuthErrorKind::Expired => "expired",
            AuthErrorKind::Invalid => "invalid",
            AuthErrorKind::Config => "config",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthError {}

/// Verifies (and, with an HS256 secret, mints) tokens.
pub struct Keys {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("algorithm", &self.algorithm)
            .field("can_mint", &self.encoding.is_some())
            .finish()
    }
}

impl Keys {
    /// An HS256 verifier and minter for `secret`.
    pub fn hs256(secret: &[u8], cfg: &AuthConfig) -> Keys {
        Keys {
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            validation: validation(Algorithm::HS256, cfg),
            algorithm: Algorithm::HS256,
        }
    }

    /// The keys `cfg` names; `Ok(None)` when it names none (dev mode).
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Keys>, AuthError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                AuthError::config(format!("cannot read auth key file {}: {e}", path.display()))
            })
        };
        let configured = [
            cfg.hs256_secret.is_some(),
            cfg.hs256_secret_file.is_some(),
            cfg.rs256_public_key_file.is_some(),
            cfg.es256_public_key_file.is_some(),
        ];
        if configured.iter().filter(|&&c| c).count() > 1 {
            return Err(AuthError::config(
                "set only one of auth.hs256_secret, auth.hs256_secret_file, \
                 auth.rs256_public_key_file, auth.es256_public_key_file",
            ));
        }
        if let Some(secret) = &cfg.hs256_secret {
            return Ok(Some(Keys::hs256(secret.as_bytes(), cfg)));
        }
        if let Some(path) = &cfg.hs256_secret_file {
            let secret = read(path)?;
            let secret = String::from_utf8_lossy(&secret).trim().to_owned();
            if secret.is_empty() {
                return Err(AuthError::config(format!(
                    "auth.hs256_secret_file {} is empty",
                    path.display()
                )));
            }
            return Ok(Some(Keys::hs256(secret.as_bytes(), cfg)));
        }
        let public = |path: &Path, alg: Algorithm| -> Result<Keys, AuthError> {
            let pem = read(path)?;
            let decoding = match alg {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                _ => DecodingKey::from_ec_pem(&pem),
            }
            .map_err(|e| {
                AuthError::config(format!(
                    "{} is not a {alg:?} public key: {e}",
                    path.display()
                ))
            })?;
            Ok(Keys {
                decoding,
                encoding: None,
                validation: validation(alg, cfg),
                algorithm: alg,
            })
        };
        if let Some(path) = &cfg.rs256_public_key_file {
            return public(path, Algorithm::RS256).map(Some);
        }
        if let Some(path) = &cfg.es256_public_key_file {
            return public(path, Algorithm::ES256).map(Some);
        }
        Ok(None)
    }

    /// Checks `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError {
                    kind: AuthErrorKind::Expired,
                    message: "the token has expired".into(),
                },
                ErrorKind::InvalidSignature => AuthError::invalid("bad token signature"),
                ErrorKind::InvalidAlgorithm => {
                    AuthError::invalid(format!("the token is not signed with {:?}", self.algorithm))
                }
                ErrorKind::InvalidIssuer => AuthError::invalid("wrong token issuer"),
                ErrorKind::InvalidAudience => AuthError::invalid("wrong token audience"),
                ErrorKind::ImmatureSignature => AuthError::invalid("the token is not valid yet"),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::invalid(format!("the token has no `{c}` claim"))
                }
                _ => AuthError::invalid(format!("malformed token: {e}")),
            })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_BYTES {
            return Err(AuthError::invalid(format!(
                "the token's `sub` must be 1 to {MAX_USER_ID_BYTES} bytes"
            )));
        }
        Ok(claims)
    }

    /// Signs `claims` (HS256 only: with a public key, tokens are minted elsewhere).
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            AuthError::config(format!(
                "cannot mint {:?} tokens: edgews has only the public key",
                self.algorithm
            ))
        })?;
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, key)
            .map_err(|e| AuthError::config(format!("cannot sign the token: {e}")))
    }
}

fn validation(alg: Algorithm, cfg: &AuthConfig) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_secs;
    v.required_spec_claims = HashSet::from(["sub".to_owned()]);
    v.validate_exp = true;
    v.validate_nbf = true;
    match &cfg.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".to_owned());
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".to_owned());
    }
    v
}

/// Dev mode's HS256 secret: read from `path`, or generated (32 random bytes,
/// hex) and written there with mode 0600 so restarts and `edgews token` use
/// the same one. The bool is true when it was just created.
pub fn dev_secret(path: &Path) -> Result<(String, bool), AuthError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let secret = text.trim().to_owned();
        if !secret.is_empty() {
            return Ok((secret, false));
        }
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| AuthError::config(format!("cannot read /dev/urandom: {e}")))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let fail = |e: std::io::Error| {
        AuthError::config(format!(
            "cannot write the dev secret to {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(fail)?;
    f.write_all(secret.as_bytes()).map_err(fail)?;
    f.write_all(b"\n").map_err(fail)?;
    Ok((secret, true))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::hs256(b"test secret", &AuthConfig::default())
    }

    fn claims(sub: &str, exp: Option<u64>) -> Claims {
        Claims {
            sub: sub.into(),
            name: Some("Alice".into()),
            roles: vec!["moderator".into(), "other".into()],
            exp,
            ..Claims::default()
        }
    }

    #[test]
    fn minted_tokens_verify_and_keep_their_claims() {
        let k = keys();
        let t = k.mint(&claims("alice", Some(unix_now() + 60))).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.display_name(), "Alice");
        let long = Claims {
            name: Some("é".repeat(100)),
            ..c.clone()
        };
        assert_eq!(
            long.display_name().len(),
            128,
            "cut on a character boundary"
        );
        assert_eq!(c.role_bits(), role::MODERATOR);
        // No exp at all is allowed.
        assert!(k.verify(&k.mint(&claims("bob", None)).unwrap()).is_ok());
    }

    #[test]
    fn expired_wrong_key_and_garbage_are_refused() {
        let k = keys();
        let old = k.mint(&claims("alice", Some(unix_now() - 120))).unwrap();
        assert!(k.verify(&old).unwrap_err().is_expired());
        let other = Keys::hs256(b"another", &AuthConfig::default());
        let t = other.mint(&claims("alice", None)).unwrap();
        assert_eq!(k.verify(&t).unwrap_err().label(), "invalid");
        assert_eq!(k.verify("not.a.token").unwrap_err().label(), "invalid");
        assert_eq!(k.verify("").unwrap_err().label(), "invalid");
        let long = k.mint(&claims(&"x".repeat(200), None)).unwrap();
        assert!(k.verify(&long).is_err(), "sub too long");
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let cfg = AuthConfig {
            issuer: Some("edge".into()),
            audience: Some("chat".into()),
            ..AuthConfig::default()
        };
        let k = Keys::hs256(b"s", &cfg);
        let mut c = claims("a", None);
        assert!(k.verify(&k.mint(&c).unwrap()).is_err(), "missing iss/aud");
        c.iss = Some("edge".into());
        c.aud = Some("chat".into());
        assert!(k.verify(&k.mint(&c).unwrap()).is_ok());
        c.aud = Some("other".into());
        assert!(k.verify(&k.mint(&c).unwrap()).is_err());
    }

    /// Keys::from_config with a public key file verifies tokens signed by the
    /// matching private key and refuses others; it cannot mint.
    fn public_key_round_trip(alg: Algorithm, private_pem: &str, public_pem: &str, other_pem: &str) {
        let dir = std::env::temp_dir().join(format!("edgews-{alg:?}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("public.pem");
        std::fs::write(&path, public_pem).unwrap();
        let mut cfg = AuthConfig::default();
        match alg {
            Algorithm::RS256 => cfg.rs256_public_key_file = Some(path),
            _ => cfg.es256_public_key_file = Some(path),
        }
        let keys = Keys::from_config(&cfg)
            .unwrap()
            .expect("a key is configured");
        let sign = |pem: &str| {
            let key = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
                _ => EncodingKey::from_ec_pem(pem.as_bytes()),
            }
            .unwrap();
            let claims = claims("carol", Some(unix_now() + 60));
            jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
        };
        assert_eq!(keys.verify(&sign(private_pem)).unwrap().sub, "carol");
        assert!(
            keys.verify(&sign(other_pem)).is_err(),
            "another key's signature"
        );
        let hs = Keys::hs256(b"x", &AuthConfig::default())
            .mint(&claims("c", None))
            .unwrap();
        assert!(keys.verify(&hs).is_err(), "an HS256 token is refused");
        assert!(keys.mint(&claims("c", None)).unwrap_err().is_config());
        std::fs::write(dir.join("public.pem"), "not a key").unwrap();
        assert!(Keys::from_config(&cfg).unwrap_err().is_config());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn es256_public_keys_verify() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        public_key_round_trip(
            Algorithm::ES256,
            &key.serialize_pem(),
            &key.public_key_pem(),
            &other.serialize_pem(),
        );
    }

    #[test]
    fn rs256_public_keys_verify() {
        // ring cannot generate RSA keys: openssl (which CI installs) does.
        let gen = || {
            let out = std::process::Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .output()
                .expect("openssl is installed (CI installs it)");
            String::from_utf8(out.stdout).unwrap()
        };
        let (private, other) = (gen(), gen());
        let mut child = std::process::Command::new("openssl")
            .args(["pkey", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(private.as_bytes())
            .unwrap();
        let public = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        public_key_round_trip(Algorithm::RS256, &private, &public, &other);
    }

    #[test]
    fn dev_secret_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("edgews-dev-secret-{}", std::process::id()));
        let path = dir.join("nested/secret");
        let (a, created) = dev_secret(&path).unwrap();
        assert!(created && a.len() == 64);
        let (b, created) = dev_secret(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let _ = std::fs::remove_dir_all(dir);
    }
}
