//! What the room server keeps per connection, inline in the engine's
//! connection slot. Its rooms are the engine's membership (`Conn::rooms`,
//! `Conn::is_member`), not kept twice.

use std::sync::Arc;

use super::directory::User;
use super::limits::{Strikes, TokenBucket};

/// One connection's state.
#[derive(Debug, Default)]
pub struct Session {
    /// The authenticated user (`None` until a token was accepted).
    pub user: Option<Arc<User>>,
    /// When the token expires (Unix seconds, leeway included; 0: never).
    pub expires_at: u32,
    /// Role bits from the token (`auth::role`).
    pub roles: u8,
    /// Message rate limit.
    pub bucket: TokenBucket,
    /// Rate-limited messages, for closing abusers.
    pub strikes: Strikes,
}

#[cfg(test)]
mod tests {
    /// A session sits inline in every connection's slot: keep it small (the
    /// room server's per-connection budget is in the README).
    #[test]
    fn session_stays_small() {
        let size = std::mem::size_of::<super::Session>();
        let slot = crate::runtime::connection_bytes::<super::Session>();
        println!("Session {size} B, engine slot with it {slot} B");
        assert!(size <= 32, "Session grew to {size} bytes");
    }
}
