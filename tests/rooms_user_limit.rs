//! `max_connections_per_user` on one node (no broker): the connection past
//! the limit is closed with 4029; the others and other users are untouched.

mod common;
mod rooms_common;

use rooms_common::{config, Rooms};

#[test]
fn a_user_past_its_connection_limit_is_closed_with_4029() {
    let mut cfg = config();
    cfg.max_connections_per_user = 2;
    let server = Rooms::start(cfg);
    let mut a = server.user("gil");
    let mut b = server.user("gil");
    // Authenticated at the upgrade: the third is closed before its welcome.
    let token = server.token("gil", "Gil");
    let mut c = server
        .open(&format!("/ws?token={token}"), &[])
        .expect("upgrade");
    assert_eq!(c.expect_close(), 4029);
    a.assert_quiet();
    b.assert_quiet();
    server.user("hal").assert_quiet();
    // One closes: a new one fits.
    a.close();
    let mut tries = 0;
    loop {
        let mut d = server
            .open(&format!("/ws?token={token}"), &[])
            .expect("upgrade");
        let v = d.recv_match("welcome or close", |_| true);
        if v["type"] == "welcome" {
            break;
        }
        tries += 1;
        assert!(tries < 50, "no room for a new connection: {v}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    b.assert_quiet();
}
