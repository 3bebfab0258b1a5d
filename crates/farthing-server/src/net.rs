//! Outbound connections to addresses merchants give (webhook endpoints, Lightning nodes, Bot API
//! base URLs): the one guard that keeps a merchant's URL from reaching farthing's own network.

use std::net::{IpAddr, SocketAddr};

/// Whether an address is one a webhook must not reach unless the operator allows it:
/// loopback, private, link-local, carrier-grade NAT, unspecified, multicast, documentation,
/// IPv6 unique-local, and IPv4 addresses wrapped in IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
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
                "{host} resolves to {}, a loopback or private address; webhooks may only reach public addresses unless the operator sets FARTHING_ALLOW_PRIVATE_WEBHOOKS=1",
                internal.ip()
            ));
        }
    }
    Ok(())
}
