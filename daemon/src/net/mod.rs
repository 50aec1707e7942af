//! The daemon's network over libp2p 0.57 (DESIGN.md §8): TCP inside a private network keyed by
//! the share secret (`private_net`, which stops non-members before any handshake), Noise, yamux; QUIC
//! beside it, for members only (`gate`: a QUIC connection of a PeerId outside the membership is
//! denied before any protocol runs);
//! identify and ping; mDNS on a LAN; a circuit relay v2 for the members, the relay client and
//! DCUtR hole punching, AutoNAT v2 among the members (see `reach`). Sync messages and Raft calls
//! travel on lanes (`lanes`): one long-lived stream per member, direction and kind,
//! `/chorus/sync/2` (the sync messages) and `/chorus/raft/5` (openraft RPCs as postcard bytes,
//! their replies on the same stream); the bulky NeedChunks and Chunks, and joins, on
//! request-response protocols with a length-prefixed codec (`/chorus/chunks/1`,
//! `/chorus/join/1`). Every frame is bounded by the frame limits.
//!
//! One task owns the Swarm ([`spawn`]); everything else talks to it through a [`NetHandle`]
//! (commands, with oneshot replies where an answer is due) and receives what arrives as
//! [`Inbound`] values. Only peers on the allow list (the Raft membership) get a request
//! answered; a peer that is not on it has a few seconds to present a valid invite code (to the
//! member that issued it) or voucher (to any member) on `/chorus/join/1`, else it is
//! disconnected and blocked (`allow_block_list`), as is any non-member that opens a lane or
//! sends a chunk request.
//! [`RaftTransport`] carries chorus-election's RPCs over it. Sync and chunk frames go out
//! through the bandwidth limit ([`throttle`]); bytes and round trips are kept per peer.
//!
//! The modules:
//! - `handle`: [`NetHandle`], the commands it sends the task, [`Inbound`], [`PeerStats`] and
//!   [`NetError`];
//! - `build`: [`NetConfig`], the protocol names and limits, and [`spawn`], which builds the
//!   transport, the behaviour and the task;
//! - `task`: the behaviour (the protocols the swarm runs) and the task that owns the Swarm, its
//!   loop, commands and swarm events; the other files add to `Task` and import only it (and
//!   the leaves: handle, codec, invite), never the other way round;
//! - `book`: the address book, and redial of members (the `--peer` ones among them);
//! - `admission`: the allow list, strangers and their grace, refusals, the join protocol;
//! - `gate`: which QUIC connections are admitted and which QUIC addresses are dialled;
//! - `dispatch`: chunk requests, lanes opened by members and this node's own, delivery to
//!   the node;
//! - `lanes`: the lanes' frames, the task that runs this node's lane to a member (opening it
//!   when a message is due, matching replies to calls) and the one that serves a member's;
//! - `reach`: connection paths (direct, hole-punched, relayed), the relay run for the members,
//!   reservations at other members' relays, dialling through them, hole punching, and the set
//!   of connected members;
//! - `better_path`: a connected member on a worse path than it could have (relayed only, or
//!   QUIC alone), dialled at its better addresses now and then, and the worse connections a
//!   better one closes;
//! - [`codec`], [`identity`], [`invite`], `link`, [`private_net`], [`raft`], [`throttle`]: the
//!   frame codec, the keypair, invites, what the task keeps per connection and per
//!   relay, the Raft transport, the bandwidth limit.

mod admission;
mod better_path;
mod book;
mod build;
pub mod codec;
mod dispatch;
mod gate;
mod handle;
pub mod identity;
pub mod invite;
mod lanes;
mod link;
pub mod private_net;
pub mod raft;
mod reach;
mod task;
pub mod throttle;

pub use book::peer_of;
pub use build::{NetConfig, spawn};
pub use codec::FrameCodec;
pub use handle::JoinAccepted;
pub use handle::{Inbound, NetError, NetHandle, PathKind, PeerPath, PeerStats, Reachability};
pub use identity::load_or_create_keypair;
pub use invite::{Code, InviteBook, Voucher, check_voucher, vouch};
pub use private_net::ShareKey;
pub use raft::RaftTransport;
pub use throttle::Throttle;
