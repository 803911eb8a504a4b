//! The room server: authenticated rooms, presence and private messages over
//! a JSON protocol (wire protocol v1, `docs/protocol.md`), built on the
//! engine's public embedding API like any other application.
//!
//! - [`config`]: the one config struct, its layers and profiles.
//! - [`assets`]: the embedded demo page and browser client (`web/`).
//! - [`auth`]: JWT verification (HS256, RS256, ES256) and dev-mode tokens.
//! - [`wire`]: parsing client requests (simd-json) and writing server messages.
//! - [`codes`]: the stable error and close codes.
//! - [`directory`]: who is online and who is in which room, across workers.
//! - [`limits`]: rate limits and origin checks.
//! - [`moderation`]: room settings, moderation and server-wide bans (the
//!   service layer the handler and the admin API share).
//! - [`handler`]: the per-message chain: auth → limits → dispatch.
//! - [`status`]: `/api/websocket/status`, metrics and health.
//! - [`admin`]: the admin HTTP API on its own listener (`admin.listen`).
//! - [`history`]: offsets, epochs, history stores and the one function that
//!   publishes a room message.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod broker;
pub mod codes;
pub mod config;

pub use config::RoomServerConfig;
pub mod directory;
pub mod handler;
pub mod history;
pub mod limits;
pub mod moderation;
pub mod server;
pub mod session;
pub mod status;
pub mod wire;
