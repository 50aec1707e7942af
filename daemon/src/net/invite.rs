//! Invites: a joiner's PeerId authenticated with the share secret. Any member can make one
//! (`chorus invite`) and any member can check one, without a round of its own: the invite is
//! BLAKE3 keyed (with a key derived from the secret) over the joiner's PeerId bytes, so it is
//! good for that peer only.

use libp2p::PeerId;

/// The key invites are made with, derived so the secret itself serves one purpose.
fn key(secret: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("chorus 2026 invite v1", secret)
}

/// The invite of `peer` for the share with `secret`.
pub fn invite_for(secret: &[u8; 32], peer: &PeerId) -> [u8; 32] {
    *blake3::keyed_hash(&key(secret), &peer.to_bytes()).as_bytes()
}

/// True when `invite` was made for `peer` with `secret` (compared in constant time).
pub fn check_invite(secret: &[u8; 32], peer: &PeerId, invite: &[u8]) -> bool {
    let Ok(given) = <[u8; 32]>::try_from(invite) else {
        return false;
    };
    blake3::Hash::from(given) == blake3::keyed_hash(&key(secret), &peer.to_bytes())
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    #[test]
    fn an_invite_is_good_for_its_peer_and_share_only() {
        let (a, b) = (
            Keypair::generate_ed25519().public().to_peer_id(),
            Keypair::generate_ed25519().public().to_peer_id(),
        );
        let inv = invite_for(&[1; 32], &a);
        assert!(check_invite(&[1; 32], &a, &inv));
        assert!(!check_invite(&[1; 32], &b, &inv));
        assert!(!check_invite(&[2; 32], &a, &inv));
        assert!(!check_invite(&[1; 32], &a, &inv[..31]));
    }
}
