//! Join tokens: one copy-pasteable line that lets a machine join a share.
//!
//! `chorus invite` prints one on a member; `chorus join TOKEN` on the new machine writes its
//! config from it. It carries the share id, the secret, what the share holds, the inviting
//! node's PeerId and addresses (where the joiner first dials), and the invite code that node
//! issued (good until it expires, for as many machines as it was made for). The bytes are a protobuf message
//! followed by a 4-byte BLAKE3 checksum, in base58 (no characters a terminal or a chat app
//! mangles), after the prefix `chorus1`. The token holds the secret, so keep it private; the
//! secret alone does not let a machine join, the invite code does, while it is good.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use prost::Message;

use super::ShareKind;

const PREFIX: &str = "chorus1";
const CHECKSUM: usize = 4;
/// No honest token comes near this; it bounds what a pasted line can make us decode.
const MAX_TOKEN: usize = 4096;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub share_id: [u8; 16],
    pub secret: [u8; 32],
    pub kind: ShareKind,
    pub inviter: PeerId,
    /// Where the inviter listens, each ending in `/p2p/<inviter>`.
    pub addresses: Vec<Multiaddr>,
    /// The invite code the inviter issued.
    pub invite: [u8; 16],
    /// When the invite expires (Unix ms), so `chorus join` can say so before trying.
    pub expires_at_ms: u64,
}

#[derive(Clone, PartialEq, Message)]
struct Wire {
    #[prost(bytes = "vec", tag = "1")]
    share_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    secret: Vec<u8>,
    #[prost(bool, tag = "3")]
    document: bool,
    #[prost(bytes = "vec", tag = "4")]
    inviter: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    addresses: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "6")]
    invite: Vec<u8>,
    #[prost(uint64, tag = "7")]
    expires_at_ms: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "not a chorus join token (it starts with `{PREFIX}`): copy the whole line `chorus invite` printed"
    )]
    Prefix,
    #[error("the token is damaged ({0}): copy the whole line `chorus invite` printed, again")]
    Damaged(&'static str),
    #[error(
        "the token holds no invite code (an older chorus made it): run `chorus invite` on a member for a new one"
    )]
    NoInvite,
}

impl JoinToken {
    /// The token's text.
    pub fn encode(&self) -> String {
        let wire = Wire {
            share_id: self.share_id.to_vec(),
            secret: self.secret.to_vec(),
            document: self.kind == ShareKind::Document,
            inviter: self.inviter.to_bytes(),
            // Without the trailing `/p2p/<inviter>`, which the decoder puts back: shorter.
            addresses: self
                .addresses
                .iter()
                .map(|a| {
                    let mut a = a.clone();
                    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                        a.pop();
                    }
                    a.to_vec()
                })
                .collect(),
            invite: self.invite.to_vec(),
            expires_at_ms: self.expires_at_ms,
        };
        let mut bytes = wire.encode_to_vec();
        let sum = blake3::hash(&bytes);
        bytes.extend_from_slice(&sum.as_bytes()[..CHECKSUM]);
        format!("{PREFIX}{}", bs58::encode(bytes).into_string())
    }

    /// Reads a token, as pasted (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<JoinToken, TokenError> {
        let text = text.trim();
        let body = text.strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        if body.len() > MAX_TOKEN {
            return Err(TokenError::Damaged("too long"));
        }
        let bytes = bs58::decode(body)
            .into_vec()
            .map_err(|_| TokenError::Damaged("a character that base58 does not use"))?;
        if bytes.len() < CHECKSUM {
            return Err(TokenError::Damaged("too short"));
        }
        let (msg, sum) = bytes.split_at(bytes.len() - CHECKSUM);
        if blake3::hash(msg).as_bytes()[..CHECKSUM] != *sum {
            return Err(TokenError::Damaged("checksum mismatch"));
        }
        let wire = Wire::decode(msg).map_err(|_| TokenError::Damaged("undecodable"))?;
        let share_id = wire
            .share_id
            .try_into()
            .map_err(|_| TokenError::Damaged("share id"))?;
        let secret = wire
            .secret
            .try_into()
            .map_err(|_| TokenError::Damaged("secret"))?;
        let inviter =
            PeerId::from_bytes(&wire.inviter).map_err(|_| TokenError::Damaged("peer id"))?;
        let invite = wire.invite.try_into().map_err(|_| TokenError::NoInvite)?;
        let addresses = wire
            .addresses
            .into_iter()
            .map(|a| Multiaddr::try_from(a).map(|a| a.with(Protocol::P2p(inviter))))
            .collect::<Result<_, _>>()
            .map_err(|_| TokenError::Damaged("address"))?;
        Ok(JoinToken {
            share_id,
            secret,
            kind: if wire.document {
                ShareKind::Document
            } else {
                ShareKind::Folder
            },
            inviter,
            addresses,
            invite,
            expires_at_ms: wire.expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        let inviter = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        JoinToken {
            share_id: [7; 16],
            secret: [9; 32],
            kind: ShareKind::Document,
            inviter,
            addresses: vec![
                format!("/ip4/192.168.1.20/tcp/41000/p2p/{inviter}")
                    .parse()
                    .unwrap(),
            ],
            invite: [3; 16],
            expires_at_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn a_token_round_trips_and_stays_one_short_line() {
        let t = token();
        let text = t.encode();
        assert!(text.len() < 200, "{}", text.len());
        assert!(!text.contains(char::is_whitespace));
        assert_eq!(JoinToken::decode(&format!("  {text}\n")).unwrap(), t);
    }

    #[test]
    fn damaged_tokens_are_refused_with_a_reason() {
        let text = token().encode();
        assert!(matches!(
            JoinToken::decode("hello"),
            Err(TokenError::Prefix)
        ));
        // One character changed, one dropped, a base58 outsider.
        let mut changed = text.clone().into_bytes();
        let i = changed.len() - 10;
        changed[i] = if changed[i] == b'2' { b'3' } else { b'2' };
        let changed = String::from_utf8(changed).unwrap();
        for bad in [
            changed.as_str(),
            &text[..text.len() - 1],
            &format!("{text}0"),
            "chorus1",
        ] {
            assert!(
                matches!(JoinToken::decode(bad), Err(TokenError::Damaged(_))),
                "{bad}"
            );
        }
    }
}
