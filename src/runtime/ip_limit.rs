//! Connections per client IP address, counted across every worker.
//!
//! A direct peer is counted at accept, before anything beyond the socket is
//! allocated. A peer that is a trusted proxy is not counted itself: the client
//! it forwards for (from `X-Forwarded-For`) is counted at the upgrade instead.
//! The table is sharded by address so accepts on different workers rarely
//! meet on a lock, and it is never touched on the message path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;

const SHARDS: usize = 16;

/// Open connections per client address.
#[derive(Debug)]
pub(crate) struct IpCounts {
    limit: usize,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

impl IpCounts {
    /// A table enforcing `limit` connections per address (0: no limit, no table).
    pub fn new(limit: usize) -> Self {
        let shards = if limit == 0 { 0 } else { SHARDS };
        IpCounts {
            limit,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        }
    }

    /// True when a limit is configured.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => (u128::from(*v6) ^ (u128::from(*v6) >> 64)) as usize,
        };
        &self.shards[h.wrapping_mul(0x9E37_79B9) >> 7 & (SHARDS - 1)]
    }

    /// Counts one more connection from `ip`; false (and nothing counted) when
    /// it already has `limit`.
    pub fn acquire(&self, ip: IpAddr) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n as usize >= self.limit {
            if *n == 0 {
                map.remove(&ip);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// One connection from `ip` is gone.
    pub fn release(&self, ip: IpAddr) {
        if !self.enabled() {
            return;
        }
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    /// Open connections counted for `ip`.
    #[cfg(test)]
    pub fn count(&self, ip: IpAddr) -> u32 {
        if !self.enabled() {
            return 0;
        }
        let map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }
}

/// True when `ip` is one of the trusted proxies.
pub(crate) fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses as IPv4, so `127.0.0.1/8` matches `::ffff:127.0.0.1`.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client a trusted proxy forwards for: walking `X-Forwarded-For` from
/// the right (the hop nearest to us), the first address that is not itself a
/// trusted proxy. Entries further left were written by the client and are not
/// believed. `None` when the header is missing or holds no valid address.
pub(crate) fn forwarded_client(trusted: &[IpNet], xff: Option<&str>) -> Option<IpAddr> {
    let mut last = None;
    for part in xff?.rsplit(',') {
        let ip: IpAddr = part.trim().parse().ok()?;
        let ip = canonical(ip);
        last = Some(ip);
        if !is_trusted(trusted, ip) {
            return Some(ip);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_up_to_the_limit_and_back() {
        let t = IpCounts::new(2);
        assert!(t.acquire(ip("10.0.0.1")));
        assert!(t.acquire(ip("10.0.0.1")));
        assert!(!t.acquire(ip("10.0.0.1")), "third is over the limit");
        assert!(
            t.acquire(ip("10.0.0.2")),
            "another address has its own count"
        );
        t.release(ip("10.0.0.1"));
        assert!(t.acquire(ip("10.0.0.1")));
        assert_eq!(t.count(ip("10.0.0.1")), 2);
        t.release(ip("10.0.0.1"));
        t.release(ip("10.0.0.1"));
        assert_eq!(t.count(ip("10.0.0.1")), 0);
    }

    #[test]
    fn no_limit_counts_nothing() {
        let t = IpCounts::new(0);
        for _ in 0..1000 {
            assert!(t.acquire(ip("10.0.0.1")));
        }
        t.release(ip("10.0.0.9"));
    }

    #[test]
    fn forwarded_for_believes_only_the_trusted_hops() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        let f = |h: &str| forwarded_client(&trusted, Some(h));
        assert_eq!(f("203.0.113.7"), Some(ip("203.0.113.7")));
        // A client that writes its own header cannot pick its address: the
        // rightmost untrusted entry (added by our proxy) wins.
        assert_eq!(f("1.2.3.4, 203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(f("203.0.113.7, 10.1.2.3"), Some(ip("203.0.113.7")));
        assert_eq!(f("::ffff:198.51.100.1"), Some(ip("198.51.100.1")));
        assert_eq!(f("garbage"), None);
        assert_eq!(forwarded_client(&trusted, None), None);
        assert!(is_trusted(&trusted, ip("::ffff:127.0.0.1")));
        assert!(!is_trusted(&trusted, ip("10.2.0.1")));
    }
}
