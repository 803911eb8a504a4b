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
    /// Member key -> index in `members`, for the members whose first room
    /// this is not (a connection's first room keeps the index in
    /// [`Rooms::first`], so a connection in one room costs nothing here).
    index: HashMap<u32, u32>,
    pub stats: RoomStats,
}

impl Room {
    pub fn members(&self) -> &[u32] {
        &self.members
    }
}

/// Where a connection's first room is: the room and the connection's index
/// in its `members`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    room: u32,
    at: u32,
}

impl Place {
    const NONE: Place = Place {
        room: u32::MAX,
        at: u32::MAX,
    };
}

/// Room membership of one worker's connections.
///
/// A connection's rooms are kept as its first room in `first` (8 bytes per
/// connection, a dense vector by connection key: keys are the worker's slab
/// keys, so it is as long as the most connections the worker has held) and
/// any further ones in `more`: most connections are in one room, and this
/// table is paid per connection.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    ids: HashMap<Box<str>, usize>,
    rooms: Slab<Room>,
    /// By connection key: its first room and its index there.
    first: Vec<Place>,
    /// Connection key -> the rooms it is in beyond the first.
    more: HashMap<u32, Vec<u32>>,
    /// Total memberships.
    subscriptions: usize,
}

impl Rooms {
    fn first_of(&self, key: u32) -> Place {
        self.first.get(key as usize).copied().unwrap_or(Place::NONE)
    }

    fn set_first(&mut self, key: u32, place: Place) {
        let at = key as usize;
        if at >= self.first.len() {
            if place == Place::NONE {
                return;
            }
            self.first.resize(at + 1, Place::NONE);
        }
        self.first[at] = place;
    }

    /// `key`'s index in room `id`'s members, if it is a member.
    fn position(&self, id: usize, key: u32) -> Option<u32> {
        let f = self.first_of(key);
        if f.room == id as u32 {
            Some(f.at)
        } else {
            self.rooms.get(id)?.index.get(&key).copied()
        }
    }

    /// Records that `key` is at index `at` of room `id`'s members.
    fn set_position(&mut self, id: usize, key: u32, at: u32) {
        if self.first_of(key).room == id as u32 {
            self.first[key as usize].at = at;
        } else {
            self.rooms[id].index.insert(key, at);
        }
    }

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
        if self.position(id, key).is_some() {
            return false;
        }
        let has_first = self.first_of(key) != Place::NONE;
        let room = &mut self.rooms[id];
        let at = room.members.len() as u32;
        room.members.push(key);
        if !has_first {
            self.set_first(
                key,
                Place {
                    room: id as u32,
                    at,
                },
            );
        } else {
            room.index.insert(key, at);
            self.more.entry(key).or_default().push(id as u32);
        }
        self.subscriptions += 1;
        true
    }

    /// Forgets that `key` is in room `id` (its membership is already gone).
    fn unlink(&mut self, key: u32, id: usize) {
        if self.first_of(key).room == id as u32 {
            let next = self.more.get_mut(&key).and_then(Vec::pop);
            let place = match next {
                // The next room becomes the first: its index moves here.
                Some(next) => match self.rooms[next as usize].index.remove(&key) {
                    Some(at) => Place { room: next, at },
                    None => Place::NONE,
                },
                None => Place::NONE,
            };
            self.set_first(key, place);
        } else if let Some(list) = self.more.get_mut(&key) {
            list.retain(|&r| r != id as u32);
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
        let first = self.first_of(key);
        if first != Place::NONE {
            self.remove_member(first.room as usize, key);
            self.set_first(key, Place::NONE);
        }
        for id in self.more.remove(&key).unwrap_or_default() {
            self.remove_member(id as usize, key);
        }
    }

    /// Takes `key` out of room `id`'s members (not out of `first`/`more`).
    fn remove_member(&mut self, id: usize, key: u32) -> bool {
        let at = if self.first_of(key).room == id as u32 {
            self.first[key as usize].at
        } else {
            match self.rooms[id].index.remove(&key) {
                Some(at) => at,
                None => return false,
            }
        };
        let room = &mut self.rooms[id];
        room.members.swap_remove(at as usize);
        if let Some(&moved) = room.members.get(at as usize) {
            self.set_position(id, moved, at);
        }
        self.subscriptions -= 1;
        if self.rooms[id].members.is_empty() {
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
        self.ids
            .get(name)
            .is_some_and(|&id| self.position(id, key).is_some())
    }

    /// Names of the rooms `key` is in.
    pub fn rooms_of(&self, key: u32) -> impl Iterator<Item = &str> + '_ {
        let first = self.first_of(key);
        (first != Place::NONE)
            .then_some(first.room)
            .into_iter()
            .chain(self.more.get(&key).into_iter().flatten().copied())
            .map(move |id| &*self.rooms[id as usize].name)
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
        assert!(r.first.iter().all(|p| *p == Place::NONE) && r.more.is_empty());
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
        assert!(room.index.is_empty(), "first rooms keep no index");
        let id = r.ids["x"];
        for (i, &m) in room.members().iter().enumerate() {
            assert_eq!(r.position(id, m), Some(i as u32));
        }
    }

    /// Random joins, leaves and closes of 40 connections over 6 rooms,
    /// against a plain model; every index is checked after every step.
    #[test]
    fn random_churn_matches_a_model() {
        use std::collections::{BTreeSet, HashMap as Map};
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut r = Rooms::default();
        let mut model: Map<u32, BTreeSet<&str>> = Map::new();
        let mut seed = 0x2545_f491_u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for _ in 0..4_000 {
            let key = next(40) as u32;
            let name = names[next(6) as usize];
            match next(10) {
                0..=4 => {
                    let new = model.entry(key).or_default().insert(name);
                    assert_eq!(r.join(key, name), new);
                }
                5..=8 => {
                    let was = model.get_mut(&key).is_some_and(|s| s.remove(name));
                    assert_eq!(r.leave(key, name), was);
                }
                _ => {
                    model.remove(&key);
                    r.leave_all(key);
                }
            }
            let expected: usize = model.values().map(BTreeSet::len).sum();
            assert_eq!(r.subscriptions(), expected);
            for (&k, rooms) in &model {
                let mut mine: Vec<&str> = r.rooms_of(k).collect();
                mine.sort_unstable();
                assert_eq!(mine, rooms.iter().copied().collect::<Vec<_>>());
                for n in names {
                    assert_eq!(r.is_member(k, n), rooms.contains(n));
                }
            }
            for (id, room) in r.rooms.iter() {
                for (i, &m) in room.members().iter().enumerate() {
                    assert_eq!(r.position(id, m), Some(i as u32));
                }
            }
        }
    }
}
