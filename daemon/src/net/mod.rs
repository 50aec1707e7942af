//! The daemon's network over libp2p 0.57 (DESIGN.md §8): TCP with a pre-shared key derived from
//! the share secret (`pnet`, which stops non-members before any handshake), Noise, yamux;
//! identify and ping; mDNS on a LAN; request-response protocols with a length-prefixed codec
//! bounded by the frame limits: `/chorus/sync/1` (the sync messages), `/chorus/chunks/1`
//! (NeedChunks and Chunks, the bulky ones) and `/chorus/raft/1` (openraft RPCs as JSON).
//!
//! One task owns the Swarm ([`swarm::spawn`]); everything else talks to it through a
//! [`NetHandle`] (commands, with oneshot replies where an answer is due) and receives what
//! arrives as [`Inbound`] values. Only peers on the allow list (the Raft membership) get a
//! request answered; a peer that is not on it has a few seconds to present a valid invite on
//! `/chorus/join/1`, else it is disconnected and blocked (`allow_block_list`), as is any
//! non-member that sends a sync or Raft request.
//! [`RaftTransport`] carries chorus-election's RPCs over it. Sync and chunk frames go out
//! through the bandwidth limit ([`throttle`]); bytes and round trips are kept per peer.

pub mod codec;
pub mod identity;
pub mod invite;
pub mod raft;
pub mod swarm;
pub mod throttle;

pub use codec::FrameCodec;
pub use identity::{load_or_create_keypair, psk_of_secret};
pub use invite::{check_invite, invite_for};
pub use raft::RaftTransport;
pub use swarm::{Inbound, NetConfig, NetError, NetHandle, PeerStats, spawn};
pub use throttle::Throttle;
