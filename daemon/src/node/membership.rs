//! Joining the group and letting others in: the node that makes the share adds the peers it
//! was given as members; a joiner presents its invite to the members it knows until the leader
//! has added it; the leader adds a peer that presented a valid invite (a learner first, then a
//! voter while there are fewer than five); and the leader completes promotions that did not
//! happen at the join.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chorus_election::{ElectionNode, Member, node_id_of};
use libp2p::{Multiaddr, PeerId};

use super::peer_of;
use crate::net::NetHandle;

/// Adds `explicit` peers as members, each retried until it is in (on the node that made the
/// share, while it leads).
pub fn add_explicit_peers(election: Arc<ElectionNode>, explicit: Vec<(PeerId, Multiaddr)>) {
    tokio::spawn(async move {
        for (peer, addr) in explicit {
            let id = node_id_of(&peer.to_bytes());
            let member = Member {
                peer_id: peer.to_bytes(),
                addresses: vec![addr.to_string()],
            };
            loop {
                let view = election.view();
                if view.voters.contains(&id) || view.learners.contains(&id) {
                    break;
                }
                if view.leader == Some(election.id()) {
                    match election.add_member(id, member.clone()).await {
                        Ok(_) => break,
                        Err(e) => tracing::debug!(%peer, "adding a member failed (retrying): {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
}

/// Presents `invite` to `targets` (and to the members they name) until this node is a member.
pub fn join(
    election: Arc<ElectionNode>,
    net: NetHandle,
    mut targets: Vec<PeerId>,
    invite: [u8; 32],
    addrs: Vec<Multiaddr>,
) {
    let me = election.id();
    let me_peer = net.local_peer_id();
    tokio::spawn(async move {
        loop {
            let view = election.view();
            if view.voters.contains(&me) || view.learners.contains(&me) {
                break;
            }
            // Every member that accepts the invite names the members it knows: one of them
            // leads, and only the leader adds members.
            let mut learnt = Vec::new();
            for p in &targets {
                match net.join(*p, invite, addrs.clone()).await {
                    Ok(Some(members)) => learnt.extend(members),
                    _ => tracing::debug!(%p, "join not accepted (yet)"),
                }
            }
            for m in learnt {
                if let Some(p) = peer_of(&m)
                    && p != me_peer
                    && !targets.contains(&p)
                {
                    net.allow(vec![p]);
                    net.add_address(p, m);
                    targets.push(p);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// A peer presented a valid invite: the leader adds it to the membership (it retries its
/// join until it is in, whoever leads by then).
pub fn on_join(election: &Arc<ElectionNode>, from: PeerId, addrs: Vec<Multiaddr>) {
    if election.view().leader != Some(election.id()) {
        return;
    }
    let e = election.clone();
    let member = Member {
        peer_id: from.to_bytes(),
        addresses: addrs.iter().map(|a| a.to_string()).collect(),
    };
    tokio::spawn(async move {
        let id = node_id_of(&member.peer_id);
        let known = e.members().contains_key(&id);
        match e.add_member(id, member).await {
            // One line for the user; the joiner's retries are routine.
            Ok(_) if !known => tracing::info!(peer = %from, "a new member joined the share"),
            Ok(_) => {}
            Err(err) => tracing::debug!(%from, "adding a joiner failed (it retries): {err}"),
        }
    });
}

/// On the leader: completes any promotion of learners to voters that did not happen when
/// they joined (two joins at once, a leader change midway), one change at a time. Called on
/// the loop's timer; `busy` keeps at most one attempt in flight.
pub fn promote(election: &Arc<ElectionNode>, busy: &Arc<AtomicBool>) {
    let view = election.view();
    if view.leader != Some(election.id()) || view.learners.is_empty() {
        return;
    }
    if busy.swap(true, Ordering::AcqRel) {
        return;
    }
    let (e, busy) = (election.clone(), busy.clone());
    tokio::spawn(async move {
        match e.promote_learners().await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(voters = ?ids, "members promoted to voters");
            }
            Ok(_) => {}
            Err(err) => tracing::debug!("promoting learners failed (retrying): {err}"),
        }
        busy.store(false, Ordering::Release);
    });
}
