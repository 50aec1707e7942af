//! Invites: a random code a member issues (`chorus invite`), good until it expires (24 h by
//! default) and for a number of machines (any number by default, one with `--uses 1`). The
//! code travels in the join token; the secret alone lets no one in. Only the member that
//! issued a code knows it (its book, `invites.json` in the state dir, holds the code's hash):
//! a joiner presents the code there and gets back a **voucher**, the joiner's PeerId and an
//! expiry signed with the issuer's identity key, which every other member checks against the
//! issuer's public key (in its PeerId) and the membership, without a round of its own. The
//! leader adds a joiner that a valid code or voucher let in.
//!
//! A code that expired, was used up by other machines, or was never issued is refused, and so
//! is a voucher that names another peer, another share, a signer that is not a member, or an
//! expiry past [`VOUCHER_TTL`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};

/// How long an invite is good for unless `chorus invite --expires` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest an invite may be made good for.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a voucher is good for (a joiner gets a fresh one each time it presents its code).
pub const VOUCHER_TTL: Duration = Duration::from_secs(3600);
/// Live invites one member keeps; issuing more is refused until some expire.
pub const MAX_LIVE: usize = 256;
/// Most machines one invite admits.
pub const MAX_USES: u32 = 1024;

/// The length of an invite code, in bytes.
pub const CODE_LEN: usize = 16;

/// An invite code.
pub type Code = [u8; CODE_LEN];

/// Now, in milliseconds since the Unix epoch (what invites and vouchers expire by).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One invite this member issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    /// BLAKE3 of the code: the book never holds a code itself.
    hash: String,
    expires_at_ms: u64,
    /// How many machines it admits.
    uses: u32,
    /// The machines (PeerIds) it admitted; each may present it again until it expires.
    redeemed_by: Vec<String>,
}

/// Why a code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this member did not issue that invite")]
    Unknown,
    #[error("the invite expired")]
    Expired,
    #[error("the invite was used by as many machines as it admits")]
    UsedUp,
}

/// Why an invite could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{MAX_LIVE} invites are live already; wait for some to expire")]
    TooMany,
    #[error("an invite admits 1 to {MAX_USES} machines")]
    Uses,
    #[error("an invite is good for at most {} days", MAX_TTL.as_secs() / 86400)]
    Ttl,
    #[error("cannot record the invite in {path}: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The invites one member issued, kept in its state dir so they survive a restart.
#[derive(Debug, Default)]
pub struct InviteBook {
    path: Option<PathBuf>,
    issued: Vec<Issued>,
}

fn hash_of(code: &[u8]) -> String {
    blake3::hash(code).to_hex().to_string()
}

impl InviteBook {
    /// The book at `path` (a missing or unreadable file is an empty book: the invites in it
    /// are lost, which refuses joins, never admits one). `None` keeps it in memory only.
    pub fn open(path: Option<PathBuf>) -> InviteBook {
        let issued = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        InviteBook { path, issued }
    }

    /// Issues an invite good for `ttl` from `now_ms`, for `uses` machines.
    pub fn issue(
        &mut self,
        ttl: Duration,
        uses: u32,
        now_ms: u64,
    ) -> Result<(Code, u64), IssueError> {
        if uses == 0 || uses > MAX_USES {
            return Err(IssueError::Uses);
        }
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(IssueError::Ttl);
        }
        self.issued.retain(|i| i.expires_at_ms > now_ms);
        if self.issued.len() >= MAX_LIVE {
            return Err(IssueError::TooMany);
        }
        let code: Code = rand::random();
        let expires_at_ms = now_ms.saturating_add(ttl.as_millis() as u64);
        self.issued.push(Issued {
            hash: hash_of(&code),
            expires_at_ms,
            uses,
            redeemed_by: Vec::new(),
        });
        self.save()?;
        Ok((code, expires_at_ms))
    }

    /// A joiner `peer` presents `code`: good when this member issued it, it has not expired,
    /// and it has a use left or `peer` used it before.
    pub fn redeem(&mut self, code: &[u8], peer: &PeerId, now_ms: u64) -> Result<(), Refused> {
        let hash = hash_of(code);
        let Some(i) = self.issued.iter_mut().find(|i| i.hash == hash) else {
            return Err(Refused::Unknown);
        };
        if i.expires_at_ms <= now_ms {
            return Err(Refused::Expired);
        }
        let peer = peer.to_string();
        if i.redeemed_by.contains(&peer) {
            return Ok(());
        }
        if i.redeemed_by.len() as u64 >= u64::from(i.uses) {
            return Err(Refused::UsedUp);
        }
        i.redeemed_by.push(peer);
        if let Err(e) = self.save() {
            // The use is counted in memory; after a restart it could be used once more.
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Voids every invite (`chorus rekey`).
    pub fn clear(&mut self) -> Result<(), IssueError> {
        self.issued.clear();
        self.save()
    }

    /// Writes the book (a temp file renamed over it, private to this user).
    fn save(&self) -> Result<(), IssueError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |source| IssueError::Save {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&self.issued).map_err(|e| err(e.into()))?;
        write_private(path, &bytes).map_err(err)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A member's word that a joiner presented one of its invites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// The joiner's PeerId.
    pub joiner: String,
    /// The member that issued the invite (its PeerId holds the public key).
    pub inviter: String,
    pub expires_at_ms: u64,
    /// The inviter's signature, hex.
    pub signature: String,
}

/// What a voucher's signature covers: the share (a key derived from the secret), the joiner,
/// the inviter and the expiry.
fn signed_bytes(
    secret: &[u8; 32],
    joiner: &PeerId,
    inviter: &PeerId,
    expires_at_ms: u64,
) -> Vec<u8> {
    let share = blake3::derive_key("chorus 2026 voucher v1", secret);
    let (j, i) = (joiner.to_bytes(), inviter.to_bytes());
    let mut m = Vec::with_capacity(64 + j.len() + i.len());
    m.extend_from_slice(b"chorus voucher v1");
    m.extend_from_slice(&share);
    m.extend_from_slice(&(j.len() as u32).to_be_bytes());
    m.extend_from_slice(&j);
    m.extend_from_slice(&(i.len() as u32).to_be_bytes());
    m.extend_from_slice(&i);
    m.extend_from_slice(&expires_at_ms.to_be_bytes());
    m
}

/// The voucher this member (`keypair`) gives `joiner`, good for [`VOUCHER_TTL`] from `now_ms`.
pub fn vouch(
    keypair: &Keypair,
    secret: &[u8; 32],
    joiner: &PeerId,
    now_ms: u64,
) -> Option<Voucher> {
    let inviter = keypair.public().to_peer_id();
    let expires_at_ms = now_ms.saturating_add(VOUCHER_TTL.as_millis() as u64);
    let signature = keypair
        .sign(&signed_bytes(secret, joiner, &inviter, expires_at_ms))
        .ok()?;
    Some(Voucher {
        joiner: joiner.to_string(),
        inviter: inviter.to_string(),
        expires_at_ms,
        signature: hex::encode(signature),
    })
}

/// The public key a PeerId carries inline (ed25519 ones do).
fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

/// True when `v` lets `presenter` in: made for it, for this share, signed by a member
/// (`is_member`), and not expired (nor dated further than [`VOUCHER_TTL`] ahead).
pub fn check_voucher(
    v: &Voucher,
    secret: &[u8; 32],
    presenter: &PeerId,
    is_member: impl Fn(&PeerId) -> bool,
    now_ms: u64,
) -> bool {
    let (Ok(joiner), Ok(inviter)) = (v.joiner.parse::<PeerId>(), v.inviter.parse::<PeerId>())
    else {
        return false;
    };
    if joiner != *presenter || inviter == joiner || !is_member(&inviter) {
        return false;
    }
    if v.expires_at_ms <= now_ms
        || v.expires_at_ms > now_ms.saturating_add(VOUCHER_TTL.as_millis() as u64 + 60_000)
    {
        return false;
    }
    let (Some(key), Ok(sig)) = (public_key_of(&inviter), hex::decode(&v.signature)) else {
        return false;
    };
    sig.len() <= 128
        && key.verify(
            &signed_bytes(secret, &joiner, &inviter, v.expires_at_ms),
            &sig,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> (Keypair, PeerId) {
        let k = Keypair::generate_ed25519();
        let p = k.public().to_peer_id();
        (k, p)
    }

    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_code_admits_its_uses_until_it_expires() {
        let mut book = InviteBook::open(None);
        let (code, expires) = book.issue(Duration::from_secs(3600), 2, 1000).unwrap();
        assert_eq!(expires, 1000 + HOUR);
        let (a, b, c) = (peer().1, peer().1, peer().1);
        assert_eq!(book.redeem(&code, &a, 2000), Ok(()));
        assert_eq!(
            book.redeem(&code, &a, 3000),
            Ok(()),
            "the same machine again"
        );
        assert_eq!(book.redeem(&code, &b, 3000), Ok(()));
        assert_eq!(book.redeem(&code, &c, 3000), Err(Refused::UsedUp));
        assert_eq!(book.redeem(&code, &a, expires), Err(Refused::Expired));
        assert_eq!(book.redeem(&[0; 16], &a, 2000), Err(Refused::Unknown));
    }

    #[test]
    fn a_single_use_code_admits_one_machine() {
        let mut book = InviteBook::open(None);
        let (code, _) = book.issue(DEFAULT_TTL, 1, 0).unwrap();
        let (a, b) = (peer().1, peer().1);
        assert_eq!(book.redeem(&code, &a, 1), Ok(()));
        assert_eq!(book.redeem(&code, &b, 1), Err(Refused::UsedUp));
    }

    #[test]
    fn the_book_survives_a_restart_and_holds_no_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invites.json");
        let (code, _) = InviteBook::open(Some(path.clone()))
            .issue(DEFAULT_TTL, 1, 0)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode(code)));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let mut again = InviteBook::open(Some(path));
        let a = peer().1;
        assert_eq!(again.redeem(&code, &a, 1), Ok(()));
        assert_eq!(again.redeem(&code, &peer().1, 1), Err(Refused::UsedUp));
    }

    #[test]
    fn bounds_on_issuing() {
        let mut book = InviteBook::open(None);
        assert!(matches!(
            book.issue(DEFAULT_TTL, 0, 0),
            Err(IssueError::Uses)
        ));
        assert!(matches!(
            book.issue(MAX_TTL * 2, 1, 0),
            Err(IssueError::Ttl)
        ));
        for _ in 0..MAX_LIVE {
            book.issue(Duration::from_secs(60), 1, 0).unwrap();
        }
        assert!(matches!(
            book.issue(DEFAULT_TTL, 1, 0),
            Err(IssueError::TooMany)
        ));
        // Expired ones make room.
        assert!(book.issue(DEFAULT_TTL, 1, 61_000).is_ok());
    }

    #[test]
    fn a_voucher_is_good_for_its_joiner_share_signer_and_time_only() {
        let (inviter_key, inviter) = peer();
        let (joiner, other) = (peer().1, peer().1);
        let secret = [7u8; 32];
        let member = |p: &PeerId| *p == inviter;
        let v = vouch(&inviter_key, &secret, &joiner, 0).unwrap();
        assert!(check_voucher(&v, &secret, &joiner, member, 1));
        assert!(
            !check_voucher(&v, &secret, &other, member, 1),
            "another peer"
        );
        assert!(
            !check_voucher(&v, &[8; 32], &joiner, member, 1),
            "another share"
        );
        assert!(
            !check_voucher(&v, &secret, &joiner, |_| false, 1),
            "not a member's"
        );
        assert!(
            !check_voucher(&v, &secret, &joiner, member, v.expires_at_ms),
            "expired"
        );
        let mut later = v.clone();
        later.expires_at_ms += 1;
        assert!(
            !check_voucher(&later, &secret, &joiner, member, 1),
            "altered"
        );
        // Signed by someone else in the inviter's name.
        let (mallory, _) = peer();
        let mut forged = vouch(&mallory, &secret, &joiner, 0).unwrap();
        forged.inviter = inviter.to_string();
        assert!(!check_voucher(&forged, &secret, &joiner, member, 1));
        // Dated far ahead.
        let far = vouch(&inviter_key, &secret, &joiner, 10 * HOUR).unwrap();
        assert!(!check_voucher(&far, &secret, &joiner, member, 1));
    }
}
