//! Rooms and publish/subscribe.
//!
//! A published message is framed once into one shared buffer; each worker
//! keeps the rooms of its own connections and queues that same buffer to
//! every local member (the write path points at it, no copy). Other workers
//! get the buffer through their command channel and fan out locally, so a
//! publish costs one frame encode in total and no lock.
//!
//! The API is on [`crate::runtime::Conn`] (`subscribe`, `unsubscribe`,
//! `publish`, `publish_others`, `rooms`, `subscribe_in_order`) and on
//! [`crate::runtime::ServerHandle`] (`publish`, `room_size`) for other threads.
//!
//! Order: each worker delivers publishes in the order they were sent. Other
//! workers' publishes arrive through the worker's FIFO command channel, and
//! a worker that publishes (or joins with `subscribe_in_order`) first fans
//! out what is waiting in its channel.
//! Slow members are bounded by [`crate::runtime::Config::backpressure_bytes`]
//! and [`crate::runtime::SlowConsumerPolicy`].

mod published;
mod rooms;

pub(crate) use published::Published;
pub use rooms::RoomStats;
pub(crate) use rooms::Rooms;
