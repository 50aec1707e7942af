//! Listen addresses as users write them. libp2p speaks multiaddrs (`/ip4/0.0.0.0/tcp/7000`);
//! `--listen` and config.toml's `listen` also take what other tools take: `IP:PORT`
//! (`127.0.0.1:7000`, `[::1]:7000`) and a bare port (`7000`, every IPv4 interface), translated
//! here. Anything else is refused with the forms that work as examples.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// The forms a listen address may take, for error messages.
const FORMS: &str = "give a multiaddr such as /ip4/0.0.0.0/tcp/7000 or /ip6/::1/tcp/7000, or IP:PORT such as 127.0.0.1:7000 or [::1]:7000, or a bare port such as 7000 (every IPv4 interface)";

/// A listen address from a multiaddr, `IP:PORT`, `[IPV6]:PORT` or a bare port; an error that
/// shows the right forms otherwise.
pub fn parse_listen(text: &str) -> Result<Multiaddr, String> {
    let t = text.trim();
    if t.starts_with('/') {
        let addr: Multiaddr = t
            .parse()
            .map_err(|e| format!("`{t}` is not a multiaddr ({e}): {FORMS}"))?;
        let protocols: Vec<Protocol> = addr.iter().collect();
        return match protocols.as_slice() {
            [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_)] => Ok(addr),
            _ => Err(format!(
                "`{t}` is not an address chorus can listen on (it listens on TCP, at an IP address): {FORMS}"
            )),
        };
    }
    if let Ok(port) = t.parse::<u16>() {
        return Ok(tcp(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(sock) = t.parse::<SocketAddr>() {
        return Ok(tcp(sock.ip(), sock.port()));
    }
    let hint = match t.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.is_empty() => format!(
            "`{t}` names a host, not an IP address: listen on its IP address (e.g. 127.0.0.1:{port} or 0.0.0.0:{port})"
        ),
        _ => format!("`{t}` is not a listen address"),
    };
    Err(format!("{hint}; {FORMS}"))
}

/// `/ip4/IP/tcp/PORT` or `/ip6/IP/tcp/PORT`.
fn tcp(ip: IpAddr, port: u16) -> Multiaddr {
    let ip = match ip {
        IpAddr::V4(a) => Protocol::Ip4(a),
        IpAddr::V6(a) => Protocol::Ip6(a),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(port))
}

/// A peer to dial: a multiaddr ending in `/p2p/PEER_ID`; an error that shows the form
/// otherwise.
pub fn parse_peer(text: &str) -> Result<Multiaddr, String> {
    const FORM: &str = "give the peer's multiaddr with its PeerId, e.g. /ip4/192.0.2.7/tcp/7000/p2p/12D3KooW... (`chorus invite` prints a member's)";
    let t = text.trim();
    let addr: Multiaddr = t
        .parse()
        .map_err(|e| format!("`{t}` is not a multiaddr ({e}): {FORM}"))?;
    if !addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
        return Err(format!("`{t}` names no peer (no /p2p/PEER_ID): {FORM}"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_forms_become_multiaddrs() {
        for (given, want) in [
            ("/ip4/0.0.0.0/tcp/7000", "/ip4/0.0.0.0/tcp/7000"),
            ("127.0.0.1:7000", "/ip4/127.0.0.1/tcp/7000"),
            ("0.0.0.0:7000", "/ip4/0.0.0.0/tcp/7000"),
            ("[::1]:7000", "/ip6/::1/tcp/7000"),
            ("[::]:0", "/ip6/::/tcp/0"),
            ("7000", "/ip4/0.0.0.0/tcp/7000"),
            (" 7000 ", "/ip4/0.0.0.0/tcp/7000"),
        ] {
            assert_eq!(parse_listen(given).unwrap().to_string(), want, "{given}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_that_work() {
        for bad in [
            "localhost:7000",
            "127.0.0.1",
            "127.0.0.1:99999",
            "/ip4/127.0.0.1/udp/7000",
            "/ip4/1.2.3.4",
            "/dns/example.com/tcp/7000",
            "nope",
            "",
        ] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains("/ip4/0.0.0.0/tcp/7000"), "{bad}: {err}");
            assert!(err.contains("127.0.0.1:7000"), "{bad}: {err}");
        }
        assert!(
            parse_listen("localhost:7000")
                .unwrap_err()
                .contains("names a host")
        );
    }

    #[test]
    fn peers_need_their_peer_id() {
        assert!(
            parse_peer("/ip4/127.0.0.1/tcp/7000")
                .unwrap_err()
                .contains("/p2p/")
        );
        assert!(parse_peer("127.0.0.1:7000").unwrap_err().contains("/p2p/"));
    }
}
