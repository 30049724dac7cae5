//! Backoff for guesses of the registration secret: a token bucket of failures per peer address
//! (IPv4 address, IPv6 /64). A peer may fail `burst` times at once, then once per `refill`;
//! while its bucket is empty every attempt from it is refused *without checking the secret*,
//! so a blocked peer learns nothing, not even from a right guess. Successes cost nothing, and
//! a refusal lasts at most one `refill` after the failures stop, so a legitimate worker behind
//! the same address is delayed, never locked out. Memory is bounded: only failing peers have
//! an entry, full buckets are dropped, and past `MAX_PEERS` the rest share one bucket.
//! Never logs; the caller counts and logs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a peer may make at once.
pub(crate) const DEFAULT_BURST: u32 = 5;
/// Then one more failure per this interval.
pub(crate) const DEFAULT_REFILL: Duration = Duration::from_secs(1);
/// Peers tracked separately; beyond, they share one bucket.
const MAX_PEERS: usize = 4_096;

/// The outcome of one guarded check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The check passed.
    Passed,
    /// The check failed; it cost the peer one token.
    Failed,
    /// The peer has no tokens left: nothing was checked. Try again after this long.
    Blocked(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A per-peer failure limiter (see the module docs).
#[derive(Debug)]
pub(crate) struct Limiter {
    burst: f64,
    refill: Duration,
    peers: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(DEFAULT_BURST, DEFAULT_REFILL)
    }
}

/// The key a peer is limited under: its IPv4 address, or its IPv6 /64 (one host usually
/// holds a whole /64). `None` when the transport gives no address.
fn key(peer: Option<IpAddr>) -> Option<IpAddr> {
    match peer?.to_canonical() {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            Some(IpAddr::V6(s.into()))
        }
        v4 => Some(v4),
    }
}

/// The key every peer past `MAX_PEERS` shares.
const OVERFLOW: Option<IpAddr> = Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));

impl Limiter {
    /// `burst` failures at once (at least 1), then one per `refill` (at least 1 ms).
    pub(crate) fn new(burst: u32, refill: Duration) -> Limiter {
        Limiter {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        (b.tokens + gained).min(self.burst)
    }

    /// Runs `check` for `peer` unless the peer is blocked; a failed check costs a token. The
    /// check runs under the limiter's lock, so concurrent guesses from one peer cannot all
    /// slip through before their failures are recorded: keep it short and synchronous (a
    /// constant-time comparison).
    pub(crate) fn attempt(&self, peer: Option<IpAddr>, check: impl FnOnce() -> bool) -> Attempt {
        let now = Instant::now();
        // The table holds only counts, so one left behind by a panic is still usable.
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut slot = key(peer);
        if !peers.contains_key(&slot) && peers.len() >= MAX_PEERS {
            peers.retain(|_, b| self.refilled(*b, now) < self.burst);
            if peers.len() >= MAX_PEERS {
                slot = OVERFLOW;
            }
        }
        if let Some(b) = peers.get(&slot).copied() {
            let tokens = self.refilled(b, now);
            if tokens < 1.0 {
                let wait = self.refill.as_secs_f64() * (1.0 - tokens);
                return Attempt::Blocked(Duration::from_secs_f64(wait));
            }
        }
        if check() {
            return Attempt::Passed;
        }
        let tokens = match peers.get(&slot) {
            Some(b) => self.refilled(*b, now),
            None => self.burst,
        };
        peers.insert(
            slot,
            Bucket {
                tokens: tokens - 1.0,
                at: now,
            },
        );
        Attempt::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_burst_then_blocked_without_checking_then_refilled() {
        let l = Limiter::new(3, Duration::from_millis(300));
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(l.attempt(a, || false), Attempt::Failed);
        }
        // Blocked: the check is not even run, so a right guess is refused too.
        let mut ran = false;
        let Attempt::Blocked(wait) = l.attempt(a, || {
            ran = true;
            true
        }) else {
            panic!("blocked")
        };
        assert!(!ran);
        assert!(wait <= Duration::from_millis(300), "{wait:?}");
        // Another peer is not affected; successes never cost anything.
        let b = ip("10.0.0.2");
        for _ in 0..10 {
            assert_eq!(l.attempt(b, || true), Attempt::Passed);
        }
        assert_eq!(l.attempt(b, || false), Attempt::Failed);
        // After the wait, the blocked peer gets one more try, and a right one passes.
        std::thread::sleep(wait + Duration::from_millis(20));
        assert_eq!(l.attempt(a, || true), Attempt::Passed);
        assert_eq!(l.attempt(a, || false), Attempt::Failed);
        assert!(matches!(l.attempt(a, || true), Attempt::Blocked(_)));
    }

    #[test]
    fn ipv6_by_prefix_and_memory_bounded() {
        let l = Limiter::new(1, Duration::from_secs(60));
        assert_eq!(l.attempt(ip("2001:db8::1"), || false), Attempt::Failed);
        // The same /64 is the same peer; another /64 is not.
        assert!(matches!(
            l.attempt(ip("2001:db8::ffff:2"), || true),
            Attempt::Blocked(_)
        ));
        assert_eq!(l.attempt(ip("2001:db8:0:1::1"), || true), Attempt::Passed);
        // IPv4-mapped IPv6 is the IPv4 peer.
        assert_eq!(l.attempt(ip("192.0.2.7"), || false), Attempt::Failed);
        assert!(matches!(
            l.attempt(ip("::ffff:192.0.2.7"), || true),
            Attempt::Blocked(_)
        ));
        // Many failing peers: the table stops growing at MAX_PEERS (+ the shared bucket), and
        // the peers past it share one bucket, so they are limited too.
        let l = Limiter::new(1, Duration::from_secs(60));
        let peer = |i: u32| Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
        for i in 0..MAX_PEERS as u32 {
            l.attempt(peer(i), || false);
        }
        assert_eq!(l.attempt(peer(1_000_000), || false), Attempt::Failed);
        assert!(matches!(
            l.attempt(peer(1_000_001), || true),
            Attempt::Blocked(_)
        ));
        assert!(l.peers.lock().unwrap().len() <= MAX_PEERS + 1);
    }
}
