//! The client's address, for login throttling, and which request headers a
//! peer may set.
//!
//! Behind nginx every request comes from nginx's address, so the real client is in
//! `X-Forwarded-For`, but that header is only believed when the peer is one of the
//! configured `TRUSTED_PROXIES`: anybody else could write anything in it. The same
//! holds for `X-Request-Id`: a request id is taken from a trusted proxy only.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::config::IpNet;
use crate::shutdown::Peer;
use crate::state::AppState;

pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer_address(&parts.extensions);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_address(
            peer,
            forwarded,
            &state.config.trusted_proxies,
        )))
    }
}

/// The address of the connection's other end (unspecified if unknown, as in
/// tests that call the router directly).
pub(crate) fn peer_address(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<Peer>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.address.ip()
        })
}

/// A request made on this host directly: from a loopback address and not passed
/// on by a proxy (nginx always sets `X-Forwarded-For`). Such a request may see
/// the infrastructure's detail (`/readyz`).
pub struct FromThisHost(pub bool);

impl FromRequestParts<AppState> for FromThisHost {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let loopback = peer_address(&parts.extensions).to_canonical().is_loopback();
        Ok(FromThisHost(
            loopback && !parts.headers.contains_key("x-forwarded-for"),
        ))
    }
}

/// Walks `X-Forwarded-For` from the right (the hop nearest to us) past trusted
/// proxies; the first address that is not one of them is the client.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["127.0.0.1".parse().unwrap()];
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.7".parse().unwrap();
        let xff = || ["203.0.113.9, 198.51.100.1"].into_iter();
        assert_eq!(
            client_address(proxy, xff(), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(stranger, xff(), &trusted), stranger);
        assert_eq!(client_address(proxy, std::iter::empty(), &trusted), proxy);
    }
}
