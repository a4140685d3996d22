//! The client's address, for rate limits and the security log: the TCP peer,
//! or — only when the operator declared a TLS-terminating proxy — the last
//! entry of `X-Forwarded-For` (the one the proxy itself appended; earlier
//! entries are whatever the client claimed).
//!
//! A router served without connect info (tests calling `Server::router`)
//! gets an unknown address rather than a panic.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// Where a request came from, if known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The rate-limit key: the address, an IPv6 address by its /64 (one
    /// customer usually holds a whole /64), or `unknown`.
    pub fn key(&self) -> String {
        match self.0 {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            None => "unknown".to_owned(),
        }
    }

    /// The address as the security log shows it.
    pub fn display(&self) -> Option<String> {
        self.0.map(|ip| match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            IpAddr::V4(v4) => v4.to_string(),
        })
    }
}

fn forwarded_for(parts: &Parts) -> Option<IpAddr> {
    let last_header = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?;
    let last = last_header.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        if state.behind_tls_proxy
            && let Some(ip) = forwarded_for(parts)
        {
            return Ok(Self(Some(ip)));
        }
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let v4 = ClientIp(Some("192.0.2.7".parse().unwrap()));
        assert_eq!(v4.key(), "192.0.2.7");
        let v6 = ClientIp(Some("2001:db8:1:2:3:4:5:6".parse().unwrap()));
        assert_eq!(v6.key(), "2001:db8:1:2::/64");
        assert_eq!(v6.display().unwrap(), "2001:db8:1:2:3:4:5:6");
        let mapped = ClientIp(Some("::ffff:192.0.2.7".parse().unwrap()));
        assert_eq!(mapped.key(), "192.0.2.7");
        assert_eq!(ClientIp(None).key(), "unknown");
        assert_eq!(ClientIp(None).display(), None);
    }

    #[test]
    fn last_forwarded_entry_wins() {
        let req = axum::http::Request::builder()
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-for", "1.1.1.1, 203.0.113.9")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(forwarded_for(&parts), Some("203.0.113.9".parse().unwrap()));
    }
}
