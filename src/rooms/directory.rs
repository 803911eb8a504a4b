//! Who is online and who is in which room, shared by every worker.
//!
//! This is the room server's one piece of shared state. It is touched on
//! connect, disconnect, join, leave, presence, `who` and private messages —
//! never on the room-message path, which only reads the connection's own
//! session and hands one frame to the engine's fan-out.
//!
//! Users and rooms live in sharded maps; a room keeps its members ordered by
//! user id (paging by cursor is a range query) with a count of connections
//! per member, so two connections of one user are one member. Locks are
//! always taken in the order: room shard → room → user.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::runtime::ConnId;

use super::codes::ErrorCode;

const SHARDS: usize = 64;

/// A user's presence status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Connected and active (the default).
    #[default]
    Online,
    /// Connected, away.
    Away,
    /// Connected, busy.
    Busy,
    /// Connected but appearing offline.
    Offline,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Busy => "busy",
            Status::Offline => "offline",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "online" => Status::Online,
            "away" => Status::Away,
            "busy" => Status::Busy,
            "offline" => Status::Offline,
            _ => return None,
        })
    }
}

/// One user, shared by all its connections.
#[derive(Debug)]
pub struct User {
    /// The id followed by the display name: inline up to 24 bytes (most
    /// id + name pairs), so a user is one allocation.
    text: compact_str::CompactString,
    id_len: u32,
    state: Mutex<UserState>,
}

#[derive(Debug, Default)]
struct UserState {
    conns: Few<ConnId>,
    /// Rooms the user is a member of (through any of its connections).
    rooms: Few<Arc<Room>>,
    status: Status,
}

impl User {
    /// The user id (`sub`).
    pub fn id(&self) -> &str {
        &self.text[..self.id_len as usize]
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.text[self.id_len as usize..]
    }

    /// The presence status.
    pub fn status(&self) -> Status {
        lock(&self.state).status
    }

    /// The user's open connections.
    pub fn connections(&self) -> Vec<ConnId> {
        lock(&self.state).conns.iter().copied().collect()
    }
}

/// A room: its members, ordered by user id.
#[derive(Debug)]
pub struct Room {
    name: Box<str>,
    members: Mutex<BTreeMap<UserKey, u32>>,
    count: AtomicUsize,
}

impl Room {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Distinct users in the room (O(1), no lock).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// One page of a room's members.
#[derive(Debug)]
pub struct Page {
    /// Distinct users in the room.
    pub count: usize,
    /// `(id, name, status)` of up to `limit` members after the cursor, by id.
    pub members: Vec<(Arc<User>, Status)>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// The result of a join.
#[derive(Debug)]
pub struct Joined {
    /// The room.
    pub room: Arc<Room>,
    /// True when this is the user's first connection in the room.
    pub first: bool,
    /// Distinct users in the room after the join.
    pub members: usize,
}

/// Users and rooms of the whole server.
#[derive(Debug)]
pub struct Directory {
    users: Box<[Mutex<HashSet<UserKey>>]>,
    rooms: Box<[Mutex<HashSet<RoomKey>>]>,
    hasher: std::collections::hash_map::RandomState,
    users_online: AtomicUsize,
    rooms_open: AtomicUsize,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            users: (0..SHARDS).map(|_| Mutex::default()).collect(),
            rooms: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            users_online: AtomicUsize::new(0),
            rooms_open: AtomicUsize::new(0),
        }
    }
}

impl Directory {
    fn shard(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    /// A user that is not (yet) in the directory: what a verified token
    /// names, kept in the session until its connection opens.
    pub fn detached(id: &str, name: &str) -> Arc<User> {
        let mut text = compact_str::CompactString::with_capacity(id.len() + name.len());
        text.push_str(id);
        text.push_str(name);
        Arc::new(User {
            text,
            id_len: id.len() as u32,
            state: Mutex::default(),
        })
    }

    /// Adds connection `conn` to user `id` (created with `name` if it has no
    /// connection yet) and returns the user. Atomic with respect to
    /// [`Directory::disconnect`] of the same user on another worker.
    pub fn connect(&self, id: &str, name: &str, conn: ConnId) -> Arc<User> {
        let mut users = lock(&self.users[self.shard(id)]);
        let user = match users.get(id) {
            Some(u) => u.0.clone(),
            None => {
                let user = Self::detached(id, name);
                users.insert(UserKey(user.clone()));
                self.users_online.fetch_add(1, Ordering::Relaxed);
                user
            }
        };
        lock(&user.state).conns.push(conn);
        user
    }

    /// Removes connection `id` from `user`; the user goes offline with its last.
    pub fn disconnect(&self, user: &Arc<User>, id: ConnId) {
        let mut users = lock(&self.users[self.shard(user.id())]);
        let mut state = lock(&user.state);
        state.conns.remove(|c| *c == id);
        if state.conns.is_empty() && users.remove(user.id()) {
            self.users_online.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The connections of user `id` (empty when it is offline).
    pub fn connections_of(&self, id: &str) -> Vec<ConnId> {
        let users = lock(&self.users[self.shard(id)]);
        users.get(id).map(|u| u.0.connections()).unwrap_or_default()
    }

    /// The user `id`, if online.
    pub fn find_user(&self, id: &str) -> Option<Arc<User>> {
        lock(&self.users[self.shard(id)])
            .get(id)
            .map(|u| u.0.clone())
    }

    /// One more connection of `user` in room `name` (created if needed).
    /// `max_members` (0: unlimited) refuses a new member with `room_full`.
    pub fn join(
        &self,
        user: &Arc<User>,
        name: &str,
        max_members: usize,
    ) -> Result<Joined, ErrorCode> {
        let mut rooms = lock(&self.rooms[self.shard(name)]);
        let room = match rooms.get(name) {
            Some(r) => r.0.clone(),
            None => {
                let room = Arc::new(Room {
                    name: name.into(),
                    members: Mutex::default(),
                    count: AtomicUsize::new(0),
                });
                rooms.insert(RoomKey(room.clone()));
                self.rooms_open.fetch_add(1, Ordering::Relaxed);
                room
            }
        };
        let mut members = lock(&room.members);
        let key = UserKey(user.clone());
        let first = if let Some(n) = members.get_mut(&key) {
            *n += 1;
            false
        } else if max_members > 0 && members.len() >= max_members {
            return Err(ErrorCode::RoomFull);
        } else {
            members.insert(key, 1);
            lock(&user.state).rooms.push(room.clone());
            true
        };
        let count = members.len();
        room.count.store(count, Ordering::Relaxed);
        drop(members);
        Ok(Joined {
            room,
            first,
            members: count,
        })
    }

    /// One connection of `user` leaves `room`. Returns whether it was the
    /// user's last connection there, and the distinct users left.
    pub fn leave(&self, user: &Arc<User>, room: &Arc<Room>) -> (bool, usize) {
        let mut rooms = lock(&self.rooms[self.shard(room.name())]);
        let mut members = lock(&room.members);
        let key = UserKey(user.clone());
        let last = match members.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                members.remove(&key);
                lock(&user.state).rooms.remove(|r| Arc::ptr_eq(r, room));
                true
            }
            None => false,
        };
        let count = members.len();
        room.count.store(count, Ordering::Relaxed);
        if count == 0
            && rooms
                .get(room.name())
                .is_some_and(|r| Arc::ptr_eq(&r.0, room))
        {
            rooms.remove(room.name());
            self.rooms_open.fetch_sub(1, Ordering::Relaxed);
        }
        (last, count)
    }

    /// Sets `user`'s status; returns the rooms it is in (to tell them).
    pub fn set_status(&self, user: &User, status: Status) -> Vec<Arc<Room>> {
        let mut state = lock(&user.state);
        state.status = status;
        state.rooms.iter().cloned().collect()
    }

    /// The room `name`, if it has members.
    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        lock(&self.rooms[self.shard(name)])
            .get(name)
            .map(|r| r.0.clone())
    }

    /// Up to `limit` members of `room` with ids after `cursor`, in id order.
    pub fn page(&self, room: &Room, cursor: Option<&str>, limit: usize) -> Page {
        let members = lock(&room.members);
        let start = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut page = Vec::with_capacity(limit.min(members.len()));
        let mut more = false;
        for (key, _) in members.range::<str, _>((start, Bound::Unbounded)) {
            if page.len() == limit {
                more = true;
                break;
            }
            let status = lock(&key.0.state).status;
            page.push((key.0.clone(), status));
        }
        let next = more
            .then(|| page.last().map(|(u, _)| u.id().to_owned()))
            .flatten();
        Page {
            count: members.len(),
            members: page,
            next,
        }
    }

    /// Whether user `id` is a member of `room` (through any connection).
    pub fn has_member(&self, room: &Room, id: &str) -> bool {
        lock(&room.members).contains_key(id)
    }

    /// Users with at least one connection.
    pub fn users_online(&self) -> usize {
        self.users_online.load(Ordering::Relaxed)
    }

    /// Rooms with at least one member.
    pub fn rooms_open(&self) -> usize {
        self.rooms_open.load(Ordering::Relaxed)
    }

    /// Rooms by name after `cursor`, up to `limit` of them: the open rooms'
    /// total, the page, and the cursor of the next page. Scans every shard
    /// (admin API only, not a request path).
    pub fn rooms_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> (usize, Vec<Arc<Room>>, Option<String>) {
        let limit = limit.max(1);
        let mut total = 0;
        let mut after: Vec<Arc<Room>> = Vec::new();
        for shard in self.rooms.iter() {
            let rooms = lock(shard);
            total += rooms.len();
            after.extend(
                rooms
                    .iter()
                    .filter(|r| cursor.is_none_or(|c| r.0.name() > c))
                    .map(|r| r.0.clone()),
            );
            // Keep only the first `limit + 1` names while scanning many rooms.
            if after.len() > 4 * (limit + 1) {
                after.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                after.truncate(limit + 1);
            }
        }
        after.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let next = (after.len() > limit).then(|| after[limit - 1].name().to_owned());
        after.truncate(limit);
        (total, after, next)
    }

    /// The `n` rooms with the most members, largest first.
    pub fn largest_rooms(&self, n: usize) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = Vec::new();
        for shard in self.rooms.iter() {
            for r in lock(shard).iter() {
                all.push((r.0.name().to_owned(), r.0.count()));
            }
            // Keep the list short while scanning many rooms.
            if all.len() > 4 * n.max(1) {
                all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                all.truncate(n);
            }
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// Locks, ignoring poisoning (a panic elsewhere must not take the room
/// server down with it; every critical section leaves consistent state).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A user in a set or an ordered map, keyed by its id.
#[derive(Debug, Clone)]
struct UserKey(Arc<User>);

impl PartialEq for UserKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}
impl Eq for UserKey {}
impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id().hash(state);
    }
}
impl PartialOrd for UserKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for UserKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id().cmp(other.0.id())
    }
}
impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

/// A room in a set, keyed by its name.
#[derive(Debug)]
struct RoomKey(Arc<Room>);

impl PartialEq for RoomKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for RoomKey {}
impl Hash for RoomKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state);
    }
}
impl Borrow<str> for RoomKey {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

/// A short list kept inline while it has one element (most users have one
/// connection and are in one room): no heap allocation for the common case,
/// and 16 bytes inline (the `Vec` is boxed so it does not widen the enum).
#[derive(Debug, Default)]
pub(crate) enum Few<T> {
    #[default]
    None,
    One(T),
    #[allow(clippy::box_collection)]
    Many(Box<Vec<T>>),
}

impl<T> Few<T> {
    pub fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            Few::None => Few::One(item),
            Few::One(a) => Few::Many(Box::new(vec![a, item])),
            Few::Many(mut v) => {
                v.push(item);
                Few::Many(v)
            }
        };
    }

    /// Removes the first element matching `f`; true if one was found.
    pub fn remove(&mut self, f: impl Fn(&T) -> bool) -> bool {
        match self {
            Few::None => false,
            Few::One(a) => {
                if f(a) {
                    *self = Few::None;
                    true
                } else {
                    false
                }
            }
            Few::Many(v) => {
                let Some(at) = v.iter().position(f) else {
                    return false;
                };
                v.swap_remove(at);
                if v.len() == 1 {
                    let last = v.pop().expect("one element left");
                    *self = Few::One(last);
                }
                true
            }
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            Few::None => [].iter(),
            Few::One(a) => std::slice::from_ref(a).iter(),
            Few::Many(v) => v.iter(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Few::None => 0,
            Few::One(_) => 1,
            Few::Many(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything the directory holds, for the broker's resync after Redis
/// came back (see `rooms::broker`).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `(user, status, connections)` of every online user.
    pub users: Vec<(Arc<User>, Status, usize)>,
    /// `(room, [(user id, connections in the room)])` of every open room.
    pub rooms: Vec<(String, Vec<(String, u32)>)>,
}

impl Directory {
    /// A copy of every user and room (one shard locked at a time, so it is
    /// consistent per user and per room, not across them).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for shard in self.users.iter() {
            for u in lock(shard).iter() {
                let state = lock(&u.0.state);
                snap.users
                    .push((u.0.clone(), state.status, state.conns.len()));
            }
        }
        for shard in self.rooms.iter() {
            for r in lock(shard).iter() {
                let members = lock(&r.0.members);
                let list = members
                    .iter()
                    .map(|(k, n)| (k.0.id().to_owned(), *n))
                    .collect();
                snap.rooms.push((r.0.name().to_owned(), list));
            }
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(worker: u16, key: u32) -> ConnId {
        ConnId {
            worker,
            key,
            gen: 1,
        }
    }

    #[test]
    fn two_connections_of_one_user_are_one_member() {
        let d = Directory::default();
        let alice = d.connect("alice", "Alice", id(0, 1));
        let alice2 = d.connect("alice", "ignored", id(1, 7));
        assert!(Arc::ptr_eq(&alice, &alice2));
        assert_eq!(alice2.name(), "Alice");
        let j = d.join(&alice, "lobby", 0).unwrap();
        assert!(j.first);
        assert_eq!(j.members, 1);
        let j2 = d.join(&alice2, "lobby", 0).unwrap();
        assert!(!j2.first, "second connection is not a new member");
        assert_eq!(j2.members, 1);
        assert_eq!(d.leave(&alice, &j.room), (false, 1));
        assert_eq!(d.leave(&alice2, &j.room), (true, 0));
        assert!(d.room("lobby").is_none(), "empty rooms go away");
        assert_eq!(d.users_online(), 1);
        d.disconnect(&alice, id(0, 1));
        assert_eq!(d.connections_of("alice"), vec![id(1, 7)]);
        d.disconnect(&alice, id(1, 7));
        assert_eq!(d.users_online(), 0);
        assert!(d.find_user("alice").is_none());
    }

    #[test]
    fn room_full_counts_users_not_connections() {
        let d = Directory::default();
        let a = d.connect("a", "A", id(0, 1));
        let b = d.connect("b", "B", id(0, 2));
        d.join(&a, "r", 1).unwrap();
        d.join(&a, "r", 1).unwrap();
        assert_eq!(d.join(&b, "r", 1).unwrap_err(), ErrorCode::RoomFull);
        assert_eq!(d.room("r").unwrap().count(), 1);
    }

    #[test]
    fn pages_walk_every_member_once_in_order() {
        let d = Directory::default();
        let mut room = None;
        for i in 0..250 {
            let u = d.connect(&format!("u{i:04}"), "x", id(0, i));
            room = Some(d.join(&u, "big", 0).unwrap().room);
        }
        let room = room.unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = d.page(&room, cursor.as_deref(), 100);
            assert_eq!(p.count, 250);
            seen.extend(p.members.iter().map(|(u, _)| u.id().to_owned()));
            match p.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let expected: Vec<String> = (0..250).map(|i| format!("u{i:04}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn status_reaches_the_users_rooms_and_largest_rooms_sort() {
        let d = Directory::default();
        let a = d.connect("a", "A", id(0, 1));
        let b = d.connect("b", "B", id(0, 2));
        d.join(&a, "x", 0).unwrap();
        d.join(&a, "y", 0).unwrap();
        d.join(&b, "y", 0).unwrap();
        let mut rooms: Vec<String> = d
            .set_status(&a, Status::Away)
            .iter()
            .map(|r| r.name().to_owned())
            .collect();
        rooms.sort();
        assert_eq!(rooms, ["x", "y"]);
        assert_eq!(a.status(), Status::Away);
        assert_eq!(d.largest_rooms(1), vec![("y".to_owned(), 2)]);
    }

    #[test]
    fn a_user_is_one_small_allocation() {
        let size = std::mem::size_of::<User>();
        assert!(size <= 80, "User grew to {size} bytes");
        let u = Directory::detached("load-12345", "Load 12345");
        assert!(!u.text.is_heap_allocated(), "short id and name stay inline");
        assert_eq!((u.id(), u.name()), ("load-12345", "Load 12345"));
    }

    #[test]
    fn few_keeps_one_inline() {
        let mut f = Few::default();
        f.push(1);
        assert!(matches!(f, Few::One(1)));
        f.push(2);
        f.push(3);
        assert!(f.remove(|x| *x == 1));
        assert_eq!(f.len(), 2);
        assert!(f.remove(|x| *x == 3));
        assert!(matches!(f, Few::One(2)));
        assert!(!f.remove(|x| *x == 9));
        assert!(f.remove(|x| *x == 2));
        assert!(f.is_empty());
    }
}
