//! The rooms of one worker: which of its connections are in which room.
//!
//! Every worker keeps only its own connections' memberships, so joining,
//! leaving and fan-out never take a lock. A room exists while it has members
//! on this worker. Membership changes are O(1); members are a dense `Vec`, so
//! fan-out walks contiguous memory.

use std::collections::HashMap;

use slab::Slab;

/// Counters of one room on one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomStats {
    /// Messages published to the room (that reached this worker).
    pub published: u64,
    /// Copies queued to members.
    pub delivered: u64,
    /// Copies dropped because the member was over its backpressure limit.
    pub dropped: u64,
    /// Members closed as slow consumers.
    pub slow_closes: u64,
}

#[derive(Debug)]
pub(crate) struct Room {
    name: Box<str>,
    members: Vec<u32>,
    /// Member key -> index in `members`.
    index: HashMap<u32, u32>,
    pub stats: RoomStats,
}

impl Room {
    pub fn members(&self) -> &[u32] {
        &self.members
    }
}

/// Room membership of one worker's connections.
///
/// A connection's rooms are kept as its first room in `first` (8 bytes per
/// member connection, no heap allocation) and any further ones in `more`:
/// most connections are in one room, and this table is paid per connection.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    ids: HashMap<Box<str>, usize>,
    rooms: Slab<Room>,
    /// Connection key -> the first room it is in.
    first: HashMap<u32, u32>,
    /// Connection key -> the rooms it is in beyond the first.
    more: HashMap<u32, Vec<u32>>,
    /// Total memberships.
    subscriptions: usize,
}

impl Rooms {
    /// Adds `key` to `name`; false when it was already a member.
    pub fn join(&mut self, key: u32, name: &str) -> bool {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.rooms.insert(Room {
                    name: name.into(),
                    members: Vec::new(),
                    index: HashMap::new(),
                    stats: RoomStats::default(),
                });
                self.ids.insert(name.into(), id);
                id
            }
        };
        let room = &mut self.rooms[id];
        if room.index.contains_key(&key) {
            return false;
        }
        room.index.insert(key, room.members.len() as u32);
        room.members.push(key);
        match self.first.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id as u32);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(key).or_default().push(id as u32);
            }
        }
        self.subscriptions += 1;
        true
    }

    /// Forgets that `key` is in room `id` (its membership is already gone).
    fn unlink(&mut self, key: u32, id: usize) {
        let id = id as u32;
        if self.first.get(&key) == Some(&id) {
            match self.more.get_mut(&key).and_then(Vec::pop) {
                Some(next) => {
                    self.first.insert(key, next);
                }
                None => {
                    self.first.remove(&key);
                }
            }
        } else if let Some(list) = self.more.get_mut(&key) {
            list.retain(|&r| r != id);
        }
        if self.more.get(&key).is_some_and(Vec::is_empty) {
            self.more.remove(&key);
        }
    }

    /// Removes `key` from `name`; false when it was not a member.
    pub fn leave(&mut self, key: u32, name: &str) -> bool {
        let Some(&id) = self.ids.get(name) else {
            return false;
        };
        if !self.remove_member(id, key) {
            return false;
        }
        self.unlink(key, id);
        true
    }

    /// Removes `key` from every room (the connection closed).
    pub fn leave_all(&mut self, key: u32) {
        if let Some(id) = self.first.remove(&key) {
            self.remove_member(id as usize, key);
        }
        for id in self.more.remove(&key).unwrap_or_default() {
            self.remove_member(id as usize, key);
        }
    }

    fn remove_member(&mut self, id: usize, key: u32) -> bool {
        let room = &mut self.rooms[id];
        let Some(at) = room.index.remove(&key) else {
            return false;
        };
        room.members.swap_remove(at as usize);
        if let Some(&moved) = room.members.get(at as usize) {
            room.index.insert(moved, at);
        }
        self.subscriptions -= 1;
        if room.members.is_empty() {
            let room = self.rooms.remove(id);
            self.ids.remove(&room.name);
        }
        true
    }

    /// The room called `name`, if it has members here.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Room> {
        let id = *self.ids.get(name)?;
        self.rooms.get_mut(id)
    }

    /// The room called `name`, if it has members here.
    pub fn get(&self, name: &str) -> Option<&Room> {
        self.rooms.get(*self.ids.get(name)?)
    }

    /// True when `key` is a member of `name`.
    pub fn is_member(&self, key: u32, name: &str) -> bool {
        self.get(name).is_some_and(|r| r.index.contains_key(&key))
    }

    /// Names of the rooms `key` is in.
    pub fn rooms_of(&self, key: u32) -> impl Iterator<Item = &str> + '_ {
        self.first
            .get(&key)
            .into_iter()
            .chain(self.more.get(&key).into_iter().flatten())
            .map(move |&id| &*self.rooms[id as usize].name)
    }

    /// Rooms with at least one member here.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Memberships here.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_and_counts() {
        let mut r = Rooms::default();
        assert!(r.join(1, "a"));
        assert!(!r.join(1, "a"));
        assert!(r.join(2, "a"));
        assert!(r.join(1, "b"));
        assert_eq!(r.get("a").unwrap().members().len(), 2);
        assert_eq!(r.subscriptions(), 3);
        let mut mine: Vec<&str> = r.rooms_of(1).collect();
        mine.sort_unstable();
        assert_eq!(mine, ["a", "b"]);
        assert!(r.leave(1, "a"));
        assert!(!r.leave(1, "a"));
        assert_eq!(r.get("a").unwrap().members(), [2]);
        r.leave_all(1);
        assert!(r.get("b").is_none(), "empty rooms are removed");
        assert_eq!(r.len(), 1);
        r.leave_all(2);
        assert_eq!((r.len(), r.subscriptions()), (0, 0));
    }

    #[test]
    fn many_rooms_per_connection_leave_in_any_order() {
        let mut r = Rooms::default();
        for name in ["a", "b", "c", "d"] {
            assert!(r.join(7, name));
        }
        assert!(r.leave(7, "a"), "the first room");
        assert!(r.leave(7, "c"));
        let mut mine: Vec<&str> = r.rooms_of(7).collect();
        mine.sort_unstable();
        assert_eq!(mine, ["b", "d"]);
        assert!(r.join(7, "a"));
        r.leave_all(7);
        assert_eq!((r.len(), r.subscriptions()), (0, 0));
        assert!(r.first.is_empty() && r.more.is_empty());
    }

    #[test]
    fn swap_remove_keeps_the_index_right_under_churn() {
        let mut r = Rooms::default();
        for k in 0..100 {
            r.join(k, "x");
        }
        for k in (0..100).step_by(3) {
            assert!(r.leave(k, "x"));
        }
        let room = r.get("x").unwrap();
        let mut members = room.members().to_vec();
        assert!(r.more.is_empty(), "one room each: nothing beyond `first`");
        members.sort_unstable();
        let expected: Vec<u32> = (0..100).filter(|k| k % 3 != 0).collect();
        assert_eq!(members, expected);
        for (i, m) in room.members().iter().enumerate() {
            assert_eq!(room.index[m] as usize, i);
        }
    }
}
