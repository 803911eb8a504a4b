//! Rooms and publish/subscribe.
//!
//! A published message is framed once into one shared buffer; each worker
//! keeps the rooms of its own connections and queues that same buffer to
//! every local member (the write path points at it, no copy). Other workers
//! get the buffer through their command channel and fan out locally, so a
//! publish costs one frame encode in total and no lock.
//!
//! The API is on [`crate::runtime::Conn`] (`subscribe`, `unsubscribe`,
//! `publish`, `publish_others`, `rooms`, and the sequenced `publish_seq`,
//! `subscribe_after`) and on [`crate::runtime::ServerHandle`] (`publish`,
//! `publish_seq`, `room_size`) for other threads.
//! Slow members are bounded by [`crate::runtime::Config::backpressure_bytes`]
//! and [`crate::runtime::SlowConsumerPolicy`].

mod floors;
mod published;
mod rooms;

pub(crate) use floors::Floors;

pub(crate) use published::Published;
pub use rooms::RoomStats;
pub(crate) use rooms::Rooms;
