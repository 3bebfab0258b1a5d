//! Outbound connections to addresses merchants give (webhook endpoints, Lightning nodes, Bot API
//! base URLs): the one guard that keeps a merchant's URL from reaching farthing's own network.

use std::net::{IpAddr, SocketAddr};

/// Whether an address is one a merchant's URL must not reach unless the operator allows it:
/// anything that is not a globally routable unicast address. IPv4: "this network" (0/8),
/// private (10/8, 172.16/12, 192.168/16), carrier-grade NAT (100.64/10), loopback (127/8),
/// link-local (169.254/16), IETF protocol assignments (192.0.0/24), documentation, 6to4 relay
/// (192.88.99/24), benchmarking (198.18/15), multicast, reserved (240/4) and broadcast. IPv6:
/// unspecified, loopback, IPv4-mapped and IPv4-compatible addresses (judged by their IPv4
/// address), NAT64 (64:ff9b::/96 by its IPv4 address; 64:ff9b:1::/48 local), discard-only
/// (100::/64), IETF assignments and Teredo (2001::/23), documentation (2001:db8::/32), 6to4
/// (2002::/16), unique-local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10) and
/// multicast.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 192 && b == 88 && c == 99)
                || (a == 198 && (b == 18 || b == 19))
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): the IPv4 address
            // is what gets reached.
            if segments[..5] == [0; 5] && (segments[5] == 0 || segments[5] == 0xffff) {
                let [.., hi, lo] = segments;
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                )));
            }
            // NAT64 well-known prefix: the embedded IPv4 address.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., hi, lo] = segments;
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                )));
            }
            let first = segments[0];
            v6.is_multicast()
                || (first == 0x64 && segments[1] == 0xff9b && segments[2] == 1)
                || (first == 0x100 && segments[1..4] == [0, 0, 0])
                || (first == 0x2001 && segments[1] < 0x200)
                || (first == 0x2001 && segments[1] == 0xdb8)
                || first == 0x2002
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
        }
    }
}

/// Checks a webhook URL: http(s), a host, and (unless `allow_private`) every address it
/// resolves to is public. The error says what to fix.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("webhook URLs must start with https:// (or http://)".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("webhook URLs must not carry credentials".to_owned());
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| "the webhook URL has no host".to_owned())?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|error| format!("cannot resolve {host}: {error}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !allow_private {
        if let Some(internal) = addresses.iter().find(|a| is_internal(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, a loopback, private or reserved address; farthing calls only public addresses unless the operator allows private ones (FARTHING_ALLOW_PRIVATE_WEBHOOKS=1 for webhooks, FARTHING_ALLOW_PRIVATE_NODES=1 for Lightning nodes)",
                internal.ip()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(text: &str) -> bool {
        is_internal(text.parse().expect("an address"))
    }

    /// Regression (security issue item 4): the filter missed these forms of internal addresses.
    #[test]
    fn every_non_public_form_is_internal() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "203.0.113.5",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001:db8::1",
            "2001::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(internal(address), "{address} must count as internal");
        }
    }

    #[test]
    fn public_addresses_are_not_internal() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "149.154.167.220",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "64:ff9b::808:808",
        ] {
            assert!(!internal(address), "{address} is public");
        }
    }
}
