//! Addresses: the overlay network derived from the device's overlay address, the check that
//! the agent API is reached through the tunnel, and resolution of the server's WireGuard
//! endpoint (a DNS name or an IP literal, with a port).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use reqwest::Url;
use watchgrid_clientkit::text::io_text;

/// The device's address on its interface: `100.64.0.7/10` as given by the server. A bare
/// address (no prefix length) is refused: without it there is no route to the overlay.
pub fn interface_address(overlay_address: &str) -> Result<IpNet, String> {
    let text = overlay_address.trim();
    if !text.contains('/') {
        return Err(format!(
            "overlay address {text:?} has no prefix length (expected e.g. 100.64.0.7/10)"
        ));
    }
    text.parse::<IpNet>()
        .map_err(|_| format!("overlay address {text:?} is not an address with a prefix length"))
}

/// The overlay network: `100.64.0.7/10` → `100.64.0.0/10`. This is the server peer's one
/// allowed-IPs entry.
pub fn overlay_network(overlay_address: &str) -> Result<IpNet, String> {
    interface_address(overlay_address).map(|net| net.trunc())
}

/// Check an agent API base URL: http or https, with a host; a plain-http URL must point at an
/// IP inside the overlay, so the device credential only ever crosses the tunnel in clear text.
pub fn check_agent_api(agent_api: &str, overlay: &IpNet) -> Result<Url, String> {
    let url = Url::parse(agent_api).map_err(|_| format!("agent API {agent_api:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("agent API {agent_api:?} is not an http(s) URL"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("agent API {agent_api:?} has no host"));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let inside = host.parse::<IpAddr>().is_ok_and(|ip| overlay.contains(&ip));
    if url.scheme() == "http" && !inside {
        return Err(format!(
            "agent API {agent_api:?} is plain http outside the overlay {overlay}: the device \
             credential would cross the network in clear text"
        ));
    }
    Ok(url)
}

/// `host:port` split into its parts; IPv6 literals are bracketed (`[fd00::1]:51820`).
pub fn split_endpoint(endpoint: &str) -> Result<(&str, u16), String> {
    let bad = || format!("server endpoint {endpoint:?} is not host:port");
    let (host, port) = endpoint.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

/// Resolve the server's WireGuard endpoint. An IPv4 address is preferred when a name has both.
pub async fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_endpoint(endpoint)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {}", io_text(&e)))?
        .collect();
    pick_address(&addrs).ok_or_else(|| format!("{host} has no address"))
}

fn pick_address(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn overlay_networks() {
        for (address, expected) in [
            ("100.64.0.7/10", "100.64.0.0/10"),
            ("100.127.255.254/10", "100.64.0.0/10"),
            ("10.8.0.2/24", "10.8.0.0/24"),
            ("10.8.0.2/32", "10.8.0.2/32"),
            (" 100.64.0.7/10 ", "100.64.0.0/10"),
            ("fd7a:115c:a1e0::7/48", "fd7a:115c:a1e0::/48"),
        ] {
            assert_eq!(
                overlay_network(address).unwrap().to_string(),
                expected,
                "{address}"
            );
        }
        assert_eq!(
            interface_address("100.64.0.7/10").unwrap().to_string(),
            "100.64.0.7/10"
        );
        for bad in ["100.64.0.7", "100.64.0.7/33", "", "host/10", "100.64.0/10"] {
            assert!(overlay_network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_api_must_use_the_tunnel() {
        let overlay: IpNet = "100.64.0.0/10".parse().unwrap();
        assert!(check_agent_api("http://100.64.0.1:8081", &overlay).is_ok());
        assert!(check_agent_api("https://agent.example.com", &overlay).is_ok());
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert!(check_agent_api("http://[fd00::1]:8081", &v6).is_ok());
        for bad in [
            "http://192.0.2.1:8081",
            "http://agent.example.com",
            "ftp://100.64.0.1",
            "100.64.0.1:8081",
        ] {
            assert!(check_agent_api(bad, &overlay).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        for (endpoint, expected) in [
            ("wg.example.com:51820", ("wg.example.com", 51820)),
            ("192.0.2.1:51820", ("192.0.2.1", 51820)),
            ("[2001:db8::1]:51820", ("2001:db8::1", 51820)),
        ] {
            assert_eq!(split_endpoint(endpoint).unwrap(), expected);
        }
        for bad in ["wg.example.com", ":51820", "h:0", "h:99999", "h:port"] {
            assert!(split_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literal_and_local_endpoints_resolve_without_the_network() {
        assert_eq!(
            resolve_endpoint("192.0.2.1:51820").await.unwrap(),
            "192.0.2.1:51820".parse().unwrap()
        );
        assert_eq!(
            resolve_endpoint("[2001:db8::1]:51820").await.unwrap(),
            "[2001:db8::1]:51820".parse().unwrap()
        );
        let local = resolve_endpoint("localhost:51820").await.unwrap();
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 51820);
    }

    #[test]
    fn ipv4_is_preferred() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(pick_address(&[v6, v4]), Some(v4));
        assert_eq!(pick_address(&[v6]), Some(v6));
        assert_eq!(pick_address(&[]), None);
    }
}
