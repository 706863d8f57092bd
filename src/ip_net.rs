//! [`IpNet`]: an IP network in CIDR notation, for the lists of trusted proxies and allowed
//! backends.
//!
//! The middleware needs only parsing, display and a membership test, so it keeps this small
//! type rather than a dependency; its text form is the one the `ipnet` crate and every
//! balancer's configuration use (`10.0.0.0/8`, `fd00::/8`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length.
///
/// ```
/// use tower_lb::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains(&"10.1.2.3".parse().unwrap()));
/// assert!(!net.contains(&"11.0.0.1".parse().unwrap()));
/// assert_eq!(net.to_string(), "10.0.0.0/8");
/// assert!("10.0.0.0".parse::<IpNet>().is_err(), "the prefix length is required");
/// assert!("10.0.0.0/33".parse::<IpNet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix_len` leading bits.
    ///
    /// # Panics
    ///
    /// If `prefix_len` is longer than the address (32 bits for IPv4, 128 for IPv6); in a
    /// `const` this is a compile-time error.
    pub const fn new_assert(addr: IpAddr, prefix_len: u8) -> Self {
        assert!(prefix_len <= max_prefix_len(&addr), "prefix too long");
        Self { addr, prefix_len }
    }

    /// The network of `addr` with `prefix_len` leading bits, or `None` if the prefix is
    /// longer than the address.
    pub const fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        if prefix_len <= max_prefix_len(&addr) {
            Some(Self { addr, prefix_len })
        } else {
            None
        }
    }

    /// The address as written (host bits are kept, as `ipnet` keeps them).
    pub const fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in this network. An IPv4 address is never in an IPv6 network, nor the
    /// other way round (an IPv4-mapped IPv6 address is compared as IPv6).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len));
                let mask = mask.unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len));
                let mask = mask.unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

const fn max_prefix_len(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl From<Ipv4Addr> for IpNet {
    /// The single address, as a `/32`.
    fn from(addr: Ipv4Addr) -> Self {
        Self::new_assert(IpAddr::V4(addr), 32)
    }
}

impl From<Ipv6Addr> for IpNet {
    /// The single address, as a `/128`.
    fn from(addr: Ipv6Addr) -> Self {
        Self::new_assert(IpAddr::V6(addr), 128)
    }
}

impl From<IpAddr> for IpNet {
    /// The single address, as a `/32` or `/128`.
    fn from(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(addr) => addr.into(),
            IpAddr::V6(addr) => addr.into(),
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IpNet {
    type Err = InvalidIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidIpNet {
            input: s.to_owned(),
        };
        let (addr, len) = s.split_once('/').ok_or_else(invalid)?;
        let addr = addr.parse::<IpAddr>().map_err(|_| invalid())?;
        // Digits only: `u8::from_str` would also take a leading `+`.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let len = len.parse::<u8>().map_err(|_| invalid())?;
        Self::new(addr, len).ok_or_else(invalid)
    }
}

/// Text that is not an IP network in CIDR notation (`address/prefix-length`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIpNet {
    input: String,
}

impl fmt::Display for InvalidIpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid IP network {:?}: expected address/prefix-length, like 10.0.0.0/8 or fd00::/8",
            self.input
        )
    }
}

impl std::error::Error for InvalidIpNet {}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_membership_follows_the_prefix() {
        let n = net("192.168.0.0/16");
        assert!(n.contains(&ip("192.168.0.0")));
        assert!(n.contains(&ip("192.168.255.255")));
        assert!(!n.contains(&ip("192.169.0.0")));
        assert!(net("0.0.0.0/0").contains(&ip("203.0.113.9")));
        assert!(net("127.0.0.1/32").contains(&ip("127.0.0.1")));
        assert!(!net("127.0.0.1/32").contains(&ip("127.0.0.2")));
        // Host bits written in the network are ignored for membership.
        assert!(net("10.1.2.3/8").contains(&ip("10.200.0.1")));
    }

    #[test]
    fn ipv6_membership_follows_the_prefix() {
        let n = net("fd00::/8");
        assert!(n.contains(&ip("fd12:3456::1")));
        assert!(!n.contains(&ip("fe80::1")));
        assert!(net("::/0").contains(&ip("2001:db8::1")));
        assert!(net("::1/128").contains(&ip("::1")));
        assert!(!net("::1/128").contains(&ip("::2")));
    }

    #[test]
    fn families_never_mix() {
        assert!(!net("0.0.0.0/0").contains(&ip("::1")));
        assert!(!net("::/0").contains(&ip("127.0.0.1")));
        assert!(!net("::ffff:0.0.0.0/96").contains(&ip("127.0.0.1")));
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "10.0.0.0/8",
            "127.0.0.1/32",
            "0.0.0.0/0",
            "fd00::/8",
            "::1/128",
        ] {
            assert_eq!(net(s).to_string(), s);
        }
        assert_eq!(IpNet::from(Ipv4Addr::LOCALHOST).to_string(), "127.0.0.1/32");
        assert_eq!(IpNet::from(Ipv6Addr::LOCALHOST).to_string(), "::1/128");
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(IpNet::from(ip).to_string(), "10.1.2.3/32");
    }

    #[test]
    fn bad_networks_are_refused_with_the_input_named() {
        for s in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
        ] {
            let err = s.parse::<IpNet>().unwrap_err();
            assert!(err.to_string().contains(&format!("{s:?}")), "{err}");
        }
    }
}
