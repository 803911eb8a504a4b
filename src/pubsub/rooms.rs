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
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    ids: HashMap<Box<str>, usize>,
    rooms: Slab<Room>,
    /// Connection key -> the rooms it is in.
    of_conn: HashMap<u32, Vec<usize>>,
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
        self.of_conn.entry(key).or_default().push(id);
        self.subscriptions += 1;
        true
    }

    /// Removes `key` from `name`; false when it was not a member.
    pub fn leave(&mut self, key: u32, name: &str) -> bool {
        let Some(&id) = self.ids.get(name) else {
            return false;
        };
        if !self.remove_member(id, key) {
            return false;
        }
        if let Some(list) = self.of_conn.get_mut(&key) {
            list.retain(|&r| r != id);
            if list.is_empty() {
                self.of_conn.remove(&key);
            }
        }
        true
    }

    /// Removes `key` from every room (the connection closed).
    pub fn leave_all(&mut self, key: u32) {
        if let Some(list) = self.of_conn.remove(&key) {
            for id in list {
                self.remove_member(id, key);
            }
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

    /// Names of the rooms `key` is in.
    pub fn rooms_of(&self, key: u32) -> impl Iterator<Item = &str> + '_ {
        self.of_conn
            .get(&key)
            .into_iter()
            .flatten()
            .map(move |&id| &*self.rooms[id].name)
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
        members.sort_unstable();
        let expected: Vec<u32> = (0..100).filter(|k| k % 3 != 0).collect();
        assert_eq!(members, expected);
        for (i, m) in room.members().iter().enumerate() {
            assert_eq!(room.index[m] as usize, i);
        }
    }
}
