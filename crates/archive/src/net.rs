//! Connection admission shared by the listeners (SMTP and HTTP): a cap per client address, a cap
//! per address range (an IPv4 /24, an IPv6 /48), so one range cannot fill the listener alone, and
//! a rate of new connections per address. The global cap is the listener's own semaphore.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_ip: usize,
    pub per_range: usize,
    pub per_minute_per_ip: usize,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerIp,
    PerRange,
    Rate,
}

impl Refusal {
    /// The figure name listeners count refusals under.
    pub fn figure(self) -> &'static str {
        match self {
            Refusal::PerIp => "reject:per-ip-limit",
            Refusal::PerRange => "reject:per-range-limit",
            Refusal::Rate => "reject:rate-limit",
        }
    }
}

pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ips: HashMap<IpAddr, PerIp>,
    ranges: HashMap<IpAddr, usize>,
}

struct PerIp {
    open: usize,
    window: Instant,
    opened: usize,
}

/// A connection let in; dropping it gives its place back.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission { limits, state: Mutex::new(State::default()) })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = canonical(ip);
        let range = range_of(ip);
        let mut state = self.state.lock().unwrap();
        let in_range = state.ranges.get(&range).copied().unwrap_or(0);
        let entry = state.ips.entry(ip).or_insert_with(|| PerIp { open: 0, window: Instant::now(), opened: 0 });
        if entry.window.elapsed() >= Duration::from_secs(60) {
            entry.window = Instant::now();
            entry.opened = 0;
        }
        if entry.open >= self.limits.per_ip {
            return Err(Refusal::PerIp);
        }
        if in_range >= self.limits.per_range {
            return Err(Refusal::PerRange);
        }
        if entry.opened >= self.limits.per_minute_per_ip {
            return Err(Refusal::Rate);
        }
        entry.open += 1;
        entry.opened += 1;
        *state.ranges.entry(range).or_default() += 1;
        Ok(Admitted { admission: self.clone(), ip })
    }

    fn leave(&self, ip: IpAddr) {
        let mut state = self.state.lock().unwrap();
        let range = range_of(ip);
        if let Some(n) = state.ranges.get_mut(&range) {
            *n -= 1;
            if *n == 0 {
                state.ranges.remove(&range);
            }
        }
        if let Some(entry) = state.ips.get_mut(&ip) {
            entry.open -= 1;
            if entry.open == 0 && entry.window.elapsed() >= Duration::from_secs(60) {
                state.ips.remove(&ip);
            }
        }
        // Addresses that left within their minute: swept now and then, so the map stays small.
        if state.ips.len() > 10_000 {
            state.ips.retain(|_, e| e.open > 0 || e.window.elapsed() < Duration::from_secs(60));
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.leave(self.ip);
    }
}

/// An IPv4 address mapped into IPv6 (a dual-stack socket) counts as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The range an address belongs to: its IPv4 /24 or IPv6 /48.
pub fn range_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4([a, b, c, 0].into())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6([s[0], s[1], s[2], 0, 0, 0, 0, 0].into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_cannot_take_more_than_its_share_and_places_come_back() {
        let a = Admission::new(Limits { per_ip: 2, per_range: 3, per_minute_per_ip: 100 });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = a.admit(ip("10.0.0.1")).unwrap();
        let _second = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Refusal::PerIp));
        let _third = a.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3")).err(), Some(Refusal::PerRange));
        assert_eq!(a.admit(ip("::ffff:10.0.0.4")).err(), Some(Refusal::PerRange), "a mapped address is the same range");
        let _other_range = a.admit(ip("10.0.1.1")).unwrap();
        drop(first);
        let _again = a.admit(ip("10.0.0.3")).unwrap();
    }

    #[test]
    fn an_address_opening_too_many_connections_a_minute_is_refused() {
        let a = Admission::new(Limits { per_ip: 10, per_range: 10, per_minute_per_ip: 3 });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            drop(a.admit(ip).unwrap());
        }
        assert_eq!(a.admit(ip).err(), Some(Refusal::Rate));
    }
}
