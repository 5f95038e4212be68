//! Address classification: which resolved addresses are public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address they carry.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `None` for a public unicast address; otherwise what kind of non-public address it
/// is (loopback, private, link-local/metadata, CGNAT, ULA, multicast, ...). Such
/// addresses are reachable only when listed exactly.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local / cloud metadata (169.254.0.0/16)",
        (100, 64..=127, _) => "shared CGNAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (255, 255, 255) if ip == Ipv4Addr::BROADCAST => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96) and 6to4
    // (2002::/16) carry an IPv4 address: judge that one.
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible (::/96)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return non_public_v4(v4).map(|_| "NAT64 of a non-public IPv4 address");
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        if non_public_v4(v4).is_some() {
            return Some("6to4 of a non-public IPv4 address");
        }
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard (100::/64)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_non_public_addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("10.1.2.3", Some("private (10.0.0.0/8)")),
            ("172.16.0.1", Some("private (172.16.0.0/12)")),
            ("172.31.255.255", Some("private (172.16.0.0/12)")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private (192.168.0.0/16)")),
            (
                "169.254.169.254",
                Some("link-local / cloud metadata (169.254.0.0/16)"),
            ),
            ("100.64.0.1", Some("shared CGNAT (100.64.0.0/10)")),
            ("100.100.100.200", Some("shared CGNAT (100.64.0.0/10)")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified (0.0.0.0/8)")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("240.0.0.1", Some("reserved (240.0.0.0/4)")),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("::1", Some("loopback (::1)")),
            ("::", Some("unspecified (::)")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private (10.0.0.0/8)")),
            (
                "::ffff:169.254.169.254",
                Some("link-local / cloud metadata (169.254.0.0/16)"),
            ),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("IPv4-compatible (::/96)")),
            ("64:ff9b::a00:1", Some("NAT64 of a non-public IPv4 address")),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some("6to4 of a non-public IPv4 address")),
            ("fc00::1", Some("unique local (fc00::/7)")),
            ("fd00:ec2::254", Some("unique local (fc00::/7)")),
            ("fe80::1", Some("link-local (fe80::/10)")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation (2001:db8::/32)")),
            ("2606:4700:4700::1111", None),
        ];
        for (ip, want) in cases {
            assert_eq!(non_public(ip.parse().unwrap()), *want, "{ip}");
        }
    }
}
