//! Which addresses outbound requests may never reach: loopback, private (RFC 1918), CGNAT,
//! link-local, unique-local, multicast, broadcast, unspecified, documentation and other
//! reserved ranges, and the cloud metadata addresses. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the address they carry; of
//! IPv6, only global unicast (`2000::/3`) outside its special blocks is reachable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: a stable code and what the range is.
pub(crate) type Blocked = (&'static str, &'static str);

/// Cloud metadata services (checked before the range they sit in).
const METADATA_V4: [(Ipv4Addr, &str); 3] = [
    (
        Ipv4Addr::new(169, 254, 169, 254),
        "cloud metadata (AWS, GCP, Azure, OpenStack)",
    ),
    (Ipv4Addr::new(169, 254, 170, 2), "AWS ECS task metadata"),
    (Ipv4Addr::new(100, 100, 100, 200), "Alibaba Cloud metadata"),
];
const METADATA_V6: [(Ipv6Addr, &str); 1] = [(
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254),
    "AWS metadata (IPv6)",
)];

/// `None` if `ip` may be reached, else why not.
pub(crate) fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    if let Some((_, what)) = METADATA_V4.iter().find(|(a, _)| *a == ip) {
        return Some(("metadata", what));
    }
    #[rustfmt::skip]
    const RANGES: [([u8; 4], u32, &str, &str); 17] = [
        ([0, 0, 0, 0], 32, "unspecified", "0.0.0.0"),
        ([0, 0, 0, 0], 8, "reserved", "\"this network\" (0.0.0.0/8)"),
        ([10, 0, 0, 0], 8, "private", "private network (10.0.0.0/8)"),
        ([100, 64, 0, 0], 10, "cgnat", "carrier-grade NAT (100.64.0.0/10)"),
        ([127, 0, 0, 0], 8, "loopback", "loopback (127.0.0.0/8)"),
        ([169, 254, 0, 0], 16, "link_local", "link-local (169.254.0.0/16)"),
        ([172, 16, 0, 0], 12, "private", "private network (172.16.0.0/12)"),
        ([192, 0, 0, 0], 24, "reserved", "IETF protocol assignments (192.0.0.0/24)"),
        ([192, 0, 2, 0], 24, "documentation", "documentation (192.0.2.0/24)"),
        ([192, 88, 99, 0], 24, "reserved", "6to4 relay anycast (192.88.99.0/24)"),
        ([192, 168, 0, 0], 16, "private", "private network (192.168.0.0/16)"),
        ([198, 18, 0, 0], 15, "reserved", "benchmarking (198.18.0.0/15)"),
        ([198, 51, 100, 0], 24, "documentation", "documentation (198.51.100.0/24)"),
        ([203, 0, 113, 0], 24, "documentation", "documentation (203.0.113.0/24)"),
        ([224, 0, 0, 0], 4, "multicast", "multicast (224.0.0.0/4)"),
        ([255, 255, 255, 255], 32, "broadcast", "broadcast (255.255.255.255)"),
        ([240, 0, 0, 0], 4, "reserved", "reserved (240.0.0.0/4)"),
    ];
    RANGES
        .iter()
        .find(|(net, bits, _, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, code, what)| (*code, *what))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if let Some((_, what)) = METADATA_V6.iter().find(|(a, _)| *a == ip) {
        return Some(("metadata", what));
    }
    if ip.is_unspecified() {
        return Some(("unspecified", "::"));
    }
    if ip.is_loopback() {
        return Some(("loopback", "loopback (::1)"));
    }
    // Forms that carry an IPv4 address are what they carry.
    let carried = if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        Some(("IPv4-mapped", low_v4(ip)))
    } else if in_v6(ip, [0, 0, 0, 0, 0, 0, 0, 0], 96) {
        Some(("IPv4-compatible", low_v4(ip)))
    } else if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        Some(("NAT64", low_v4(ip)))
    } else if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        Some((
            "6to4",
            Ipv4Addr::from(((u128::from(ip) >> 80) & 0xffff_ffff) as u32),
        ))
    } else {
        None
    };
    if let Some((form, v4)) = carried {
        return classify_v4(v4).map(|(code, _)| (code, form_note(form)));
    }
    #[rustfmt::skip]
    const RANGES: [([u16; 8], u32, &str, &str); 12] = [
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "private", "local-use NAT64 (64:ff9b:1::/48)"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "reserved", "discard-only (100::/64)"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "reserved", "Teredo (2001::/32)"),
        ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "reserved", "benchmarking (2001:2::/48)"),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "reserved", "ORCHID (2001:10::/28)"),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "reserved", "ORCHIDv2 (2001:20::/28)"),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "documentation (2001:db8::/32)"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "documentation (3fff::/20)"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique_local", "unique local (fc00::/7)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link_local", "link-local (fe80::/10)"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "reserved", "site-local, deprecated (fec0::/10)"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "multicast (ff00::/8)"),
    ];
    if let Some((_, _, code, what)) = RANGES.iter().find(|(n, b, _, _)| in_v6(ip, *n, *b)) {
        return Some((code, what));
    }
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some(("reserved", "outside global unicast (2000::/3)"));
    }
    None
}

fn form_note(form: &str) -> &'static str {
    match form {
        "IPv4-mapped" => "an IPv4-mapped IPv6 form of a blocked IPv4 address",
        "IPv4-compatible" => "an IPv4-compatible IPv6 form of a blocked IPv4 address",
        "NAT64" => "a NAT64 form (64:ff9b::/96) of a blocked IPv4 address",
        _ => "a 6to4 form (2002::/16) of a blocked IPv4 address",
    }
}
