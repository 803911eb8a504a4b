//! Room settings over real sockets (docs/protocol.md, "Room settings"):
//! `create` and its validation, reserved names, private rooms with invites
//! and passwords, `max_members`, moderated rooms with per-room moderator
//! grants, `delete`, and what outlives a room's last member.

mod common;
mod rooms_common;

use edgews::rooms::auth::{unix_now, Claims};
use rooms_common::{config, Client, Rooms};
use serde_json::json;

/// A connection of `sub` whose token carries `roles`.
fn user_with(rooms: &Rooms, sub: &str, roles: &[&str]) -> Client {
    let claims = Claims {
        sub: sub.to_owned(),
        name: Some(rooms_common::display(sub)),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        exp: Some(unix_now() + 3600),
        ..Claims::default()
    };
    let token = rooms.keys.mint(&claims).expect("mint");
    let mut c = rooms
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    let w = c.recv();
    assert_eq!(w["type"], "welcome", "{w}");
    c
}

#[test]
fn create_validates_and_refuses_existing_rooms() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let r = alice.ack(json!({"type": "create", "room": "s1"}));
    assert_eq!(
        (
            r["room"].clone(),
            r["public"].clone(),
            r["moderated"].clone(),
            r["has_password"].clone()
        ),
        (json!("s1"), json!(true), json!(false), json!(false)),
        "{r}"
    );
    // Created once: again (by anyone) is room_exists.
    alice.error(json!({"type": "create", "room": "s1"}), "room_exists");
    bob.error(json!({"type": "create", "room": "s1"}), "room_exists");
    // A room auto-created by a join (it has members) cannot be taken over.
    bob.join("auto1");
    alice.error(json!({"type": "create", "room": "auto1"}), "room_exists");
    // Validation: each bad field is a bad_request naming it.
    for (req, field) in [
        (
            json!({"type": "create", "room": "v", "max_members": 0}),
            "max_members",
        ),
        (
            json!({"type": "create", "room": "v", "public": "yes"}),
            "public",
        ),
        (
            json!({"type": "create", "room": "v", "password": ""}),
            "password",
        ),
        (
            json!({"type": "create", "room": "v", "history": {"size": 0, "ttl_s": 60}}),
            "history",
        ),
        (
            json!({"type": "create", "room": "v", "history": {"size": 10}}),
            "ttl_s",
        ),
        (
            json!({"type": "create", "room": "v", "history": {"size": 10, "ttl_s": 1, "x": 1}}),
            "x",
        ),
        (
            json!({"type": "create", "room": "v", "history": 5}),
            "history",
        ),
        (
            json!({"type": "create", "room": "v", "secret": true}),
            "secret",
        ),
        (json!({"type": "create", "room": "v\u{1}"}), "room"),
    ] {
        let e = alice.error(req.clone(), "bad_request");
        assert!(
            e["message"].as_str().unwrap().contains(field),
            "{req} → {e} should name `{field}`"
        );
    }
    // None of those created "v".
    alice.ack(json!({"type": "create", "room": "v", "history": {"size": 100, "ttl_s": 3600}}));
}

#[test]
fn reserved_names_are_for_their_roles() {
    let rooms = Rooms::start(config());
    let mut user = rooms.user("user");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut admin = user_with(&rooms, "root", &["admin"]);
    for room in ["admin-ops", "moderator-lounge"] {
        user.error(json!({"type": "join", "room": room}), "forbidden");
        user.error(json!({"type": "create", "room": room}), "forbidden");
    }
    moder.error(json!({"type": "join", "room": "admin-ops"}), "forbidden");
    moder.error(json!({"type": "create", "room": "admin-x"}), "forbidden");
    moder.join("moderator-lounge");
    moder.ack(json!({"type": "create", "room": "moderator-team"}));
    admin.join("admin-ops");
    admin.join("moderator-lounge");
    admin.ack(json!({"type": "create", "room": "admin-audit"}));
    // Only the prefix is reserved.
    user.join("administrators");
    user.join("my-admin-room");
}

#[test]
fn private_rooms_need_an_invite_and_invites_are_for_moderators() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    alice.ack(json!({"type": "create", "room": "priv", "public": false}));
    bob.error(json!({"type": "join", "room": "priv"}), "not_invited");
    // A wrong password does not open a room that has none.
    bob.error(
        json!({"type": "join", "room": "priv", "password": "guess"}),
        "not_invited",
    );
    // An ordinary member cannot invite.
    carol.error(
        json!({"type": "invite", "room": "priv", "user": "bob"}),
        "forbidden",
    );
    // The creator invites; the invitee's connection is told.
    let r = alice.ack(json!({"type": "invite", "room": "priv", "user": "bob"}));
    assert_eq!(
        (r["room"].clone(), r["user"].clone()),
        (json!("priv"), json!("bob"))
    );
    let ev = bob.recv_type("invited");
    assert_eq!(
        (ev["room"].clone(), ev["by"].clone()),
        (json!("priv"), json!("alice"))
    );
    assert_eq!(bob.join("priv"), 1);
    // The invite is by user id: a new connection of bob gets in too.
    let mut bob2 = rooms.user("bob");
    assert_eq!(bob2.join("priv"), 1);
    carol.error(json!({"type": "join", "room": "priv"}), "not_invited");
    // Moderators (JWT) and the creator need no invite; moderators may invite.
    moder.join("priv");
    alice.join("priv");
    moder.ack(json!({"type": "invite", "room": "priv", "user": "carol"}));
    carol.join("priv");
}

#[test]
fn password_rooms_check_the_password_and_invites_skip_it() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    let r = alice.ack(json!({"type": "create", "room": "pw", "password": "hunter2"}));
    assert_eq!(r["has_password"], true, "{r}");
    bob.error(json!({"type": "join", "room": "pw"}), "wrong_password");
    bob.error(
        json!({"type": "join", "room": "pw", "password": "hunter3"}),
        "wrong_password",
    );
    bob.error(
        json!({"type": "join", "room": "pw", "password": "HUNTER2"}),
        "wrong_password",
    );
    let r = bob.ack(json!({"type": "join", "room": "pw", "password": "hunter2"}));
    assert_eq!(r["members"], 1, "{r}");
    // The creator needs no password; an invitee neither.
    alice.join("pw");
    alice.ack(json!({"type": "invite", "room": "pw", "user": "carol"}));
    carol.join("pw");
    // Private with a password: the password also lets one in.
    alice.ack(json!({"type": "create", "room": "pp", "public": false, "password": "s3cret"}));
    let mut dave = rooms.user("dave");
    dave.error(json!({"type": "join", "room": "pp"}), "wrong_password");
    dave.ack(json!({"type": "join", "room": "pp", "password": "s3cret"}));
}

#[test]
fn max_members_is_per_room_and_within_the_servers_limit() {
    let mut cfg = config();
    cfg.max_members_per_room = 3;
    let rooms = Rooms::start(cfg);
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    alice.error(
        json!({"type": "create", "room": "big", "max_members": 4}),
        "bad_request",
    );
    let r = alice.ack(json!({"type": "create", "room": "small", "max_members": 2}));
    assert_eq!(r["max_members"], 2, "{r}");
    alice.join("small");
    bob.join("small");
    carol.error(json!({"type": "join", "room": "small"}), "room_full");
    // A second connection of a member still gets in.
    let mut bob2 = rooms.user("bob");
    assert_eq!(bob2.join("small"), 2);
    // Without max_members the server's limit applies.
    alice.ack(json!({"type": "create", "room": "std"}));
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("std");
    }
    rooms
        .user("dave")
        .error(json!({"type": "join", "room": "std"}), "room_full");
}

#[test]
fn moderated_rooms_let_only_moderators_post_and_creators_grant() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carol = rooms.user("carol");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    let mut admin = user_with(&rooms, "root", &["admin"]);
    alice.ack(json!({"type": "create", "room": "news", "moderated": true}));
    for c in [&mut alice, &mut bob, &mut carol, &mut moder, &mut admin] {
        c.join("news");
    }
    let post = json!({"type": "message", "room": "news", "data": "hi"});
    bob.error(post.clone(), "moderated");
    bob.error(json!({"type": "typing", "room": "news"}), "moderated");
    alice.ack(post.clone());
    moder.ack(post.clone());
    admin.ack(post.clone());
    // Only the creator (or an admin) grants; not a member, not a JWT moderator.
    bob.error(
        json!({"type": "grant", "room": "news", "user": "bob"}),
        "forbidden",
    );
    moder.error(
        json!({"type": "grant", "room": "news", "user": "bob"}),
        "forbidden",
    );
    alice.ack(json!({"type": "grant", "room": "news", "user": "bob"}));
    bob.ack(post.clone());
    // A granted moderator does not grant in turn.
    bob.error(
        json!({"type": "grant", "room": "news", "user": "carol"}),
        "forbidden",
    );
    carol.error(post.clone(), "moderated");
    admin.ack(json!({"type": "grant", "room": "news", "user": "carol"}));
    carol.ack(post.clone());
    alice.ack(json!({"type": "revoke", "room": "news", "user": "bob"}));
    bob.error(post.clone(), "moderated");
    alice.error(
        json!({"type": "revoke", "room": "news", "user": "bob"}),
        "bad_request",
    );
    bob.error(
        json!({"type": "revoke", "room": "news", "user": "carol"}),
        "forbidden",
    );
    // A grant is per room.
    bob.join("elsewhere");
    bob.ack(json!({"type": "message", "room": "elsewhere", "data": 1}));
}

#[test]
fn delete_tells_the_room_and_empties_it_on_every_worker() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    let mut carols = rooms.user_on_both_workers("carol");
    alice.ack(json!({"type": "create", "room": "gone", "moderated": true}));
    alice.join("gone");
    bob.join("gone");
    for (c, _) in carols.iter_mut() {
        c.join("gone");
    }
    bob.error(json!({"type": "delete", "room": "gone"}), "forbidden");
    let mut moder = user_with(&rooms, "mod", &["moderator"]);
    moder.error(json!({"type": "delete", "room": "gone"}), "forbidden");
    let r = alice.ack(json!({"type": "delete", "room": "gone"}));
    assert_eq!(r["removed"].as_u64(), Some(2 + carols.len() as u64), "{r}");
    // Everyone (the deleter too) hears room_deleted, and is out of the room.
    let mut everyone: Vec<&mut Client> = vec![&mut alice, &mut bob];
    everyone.extend(carols.iter_mut().map(|(c, _)| c));
    for c in everyone {
        let ev = c.recv_type("room_deleted");
        assert_eq!(
            (ev["room"].clone(), ev["by"].clone()),
            (json!("gone"), json!("alice"))
        );
        // The leave runs on the connection's own worker right after the
        // event; a fence orders this client's next request after it.
        c.fence();
        c.error(
            json!({"type": "message", "room": "gone", "data": 1}),
            "not_in_room",
        );
        // No user_left flood for a deleted room.
        assert!(
            c.fence().iter().all(|v| v["type"] != "user_left"),
            "user_left after room_deleted"
        );
    }
    // The settings went with it: a join auto-creates a plain room.
    assert_eq!(bob.join("gone"), 1);
    bob.ack(json!({"type": "message", "room": "gone", "data": "not moderated"}));
    alice.error(
        json!({"type": "delete", "room": "nothing-here"}),
        "room_not_found",
    );
    // An admin deletes an auto-created room too; its creator-less members leave.
    let mut admin = user_with(&rooms, "root", &["admin"]);
    bob.error(json!({"type": "delete", "room": "gone"}), "forbidden");
    admin.ack(json!({"type": "delete", "room": "gone"}));
    bob.recv_type("room_deleted");
}

#[test]
fn a_created_room_outlives_its_last_member_until_deleted() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    let mut bob = rooms.user("bob");
    alice.ack(json!({"type": "create", "room": "keep", "moderated": true}));
    bob.join("keep");
    bob.ack(json!({"type": "leave", "room": "keep"}));
    // Empty, yet still there with its settings.
    alice.error(json!({"type": "create", "room": "keep"}), "room_exists");
    bob.join("keep");
    bob.error(
        json!({"type": "message", "room": "keep", "data": 1}),
        "moderated",
    );
    bob.close();
    let mut bob = rooms.user("bob");
    bob.join("keep");
    bob.error(
        json!({"type": "message", "room": "keep", "data": 1}),
        "moderated",
    );
    alice.ack(json!({"type": "delete", "room": "keep"}));
    bob.recv_type("room_deleted");
    alice.ack(json!({"type": "create", "room": "keep"}));
    // An auto-created room ends with its last member: create then works.
    bob.join("auto");
    bob.ack(json!({"type": "leave", "room": "auto"}));
    alice.ack(json!({"type": "create", "room": "auto"}));
}

#[test]
fn create_history_limits_bound_what_the_room_keeps() {
    let rooms = Rooms::start(config());
    let mut alice = rooms.user("alice");
    alice.ack(json!({"type": "create", "room": "h2", "history": {"size": 2, "ttl_s": 0}}));
    alice.join("h2");
    for i in 0..5 {
        alice.ack(json!({"type": "message", "room": "h2", "data": i}));
    }
    let page = alice.ack(json!({"type": "history", "room": "h2"}));
    let kept: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(kept, [4, 5], "{page}");
    // What fell out of the room's own limit is not recoverable.
    let mut again = rooms.user("alice");
    let epoch = page["epoch"].clone();
    let j =
        again.ack(json!({"type": "join", "room": "h2", "since": {"epoch": epoch, "offset": 1}}));
    assert_eq!(
        (&j["recovered"], &j["reason"]),
        (&json!(false), &json!("too_old")),
        "{j}"
    );
}
