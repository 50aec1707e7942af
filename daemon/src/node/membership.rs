//! Joining the group and letting others in: the node that makes the share adds the peers it
//! was given as members; a joiner presents its invite to the members it knows until the leader
//! has added it; the leader adds a peer that presented a valid invite (a learner first, then a
//! voter while there are fewer than five); the leader's care of the membership afterwards
//! (promotions that did not happen at the join, voters long unseen made learners), and
//! `chorus remove`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_election::{ElectionNode, Member, NodeId, node_id_of};
use libp2p::{Multiaddr, PeerId};

use crate::net::peer_of;
use crate::net::{Code, NetHandle};

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

/// Presents the invite `code` to `targets` (and to the members they name) until this node is
/// a member; the member that issued the code answers with a voucher, which goes to the others
/// with the code from then on.
pub fn join(
    election: Arc<ElectionNode>,
    net: NetHandle,
    mut targets: Vec<PeerId>,
    code: Code,
    addrs: Vec<Multiaddr>,
) {
    let me = election.id();
    let me_peer = net.local_peer_id();
    tokio::spawn(async move {
        let mut voucher = None;
        loop {
            let view = election.view();
            if view.voters.contains(&me) || view.learners.contains(&me) {
                break;
            }
            // Every member that accepts the invite names the members it knows: one of them
            // leads, and only the leader adds members.
            let mut learnt = Vec::new();
            for p in &targets {
                match net
                    .join(*p, Some(code), voucher.clone(), addrs.clone())
                    .await
                {
                    Ok(Some(accepted)) => {
                        learnt.extend(accepted.members);
                        if accepted.voucher.is_some() {
                            voucher = accepted.voucher;
                        }
                    }
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

/// How often the leader looks after the membership.
const KEEP_EVERY: Duration = Duration::from_secs(1);

/// How often the leader brings the members' recorded addresses up to date.
const ADDRESSES_EVERY: Duration = Duration::from_secs(30);

/// Most addresses recorded per member.
const MAX_RECORDED: usize = 8;

/// The addresses worth recording of those a member reports, in a stable order: no circuits
/// (they come and go with the relays, and are made afresh from the members connected), no
/// unspecified ones, and loopback only where there is nothing else (one machine, as in tests).
pub fn recordable(addrs: &[Multiaddr]) -> Vec<String> {
    use libp2p::multiaddr::Protocol;
    let kept: Vec<&Multiaddr> = addrs
        .iter()
        .filter(|a| {
            !a.iter().any(|p| match p {
                Protocol::P2pCircuit => true,
                Protocol::Ip4(ip) => ip.is_unspecified(),
                Protocol::Ip6(ip) => ip.is_unspecified(),
                _ => false,
            })
        })
        .collect();
    let loopback = |a: &Multiaddr| {
        a.iter().any(|p| match p {
            Protocol::Ip4(ip) => ip.is_loopback(),
            Protocol::Ip6(ip) => ip.is_loopback(),
            _ => false,
        })
    };
    let elsewhere = kept.iter().any(|a| !loopback(a));
    let mut out: Vec<String> = kept
        .into_iter()
        .filter(|a| !elsewhere || !loopback(a))
        .map(|a| a.to_string())
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_RECORDED);
    out
}

/// On the leader: the members whose recorded addresses differ from those they report now.
async fn update_addresses(election: &ElectionNode, net: &NetHandle) {
    let Ok(reported) = net.reported_addresses().await else {
        return;
    };
    let members = election.members();
    let mut update = std::collections::BTreeMap::new();
    for (peer, addrs) in reported {
        let id = node_id_of(&peer.to_bytes());
        let Some(m) = members.get(&id) else { continue };
        let now = recordable(&addrs);
        let mut was = m.addresses.clone();
        was.sort();
        if !now.is_empty() && now != was {
            update.insert(id, now);
        }
    }
    if update.is_empty() {
        return;
    }
    let ids: Vec<NodeId> = update.keys().copied().collect();
    match election.set_addresses(update).await {
        Ok(()) => tracing::info!(members = ?ids, "recorded members' new addresses"),
        Err(err) => tracing::debug!("recording members' addresses failed (retrying): {err}"),
    }
}

/// The leader's care of the membership, one task owning when each member was last seen:
/// it records members' current addresses (every 30 s, when they changed), completes promotions of learners to voters that did not happen at the join (two joins
/// at once, a leader change midway) for learners connected now, and demotes to learner a
/// voter unseen for `demote_after` (so a lost machine does not count toward the quorum the
/// others need; it is promoted again once it is back). `None` never demotes.
pub fn keep(election: Arc<ElectionNode>, net: NetHandle, demote_after: Option<Duration>) {
    tokio::spawn(async move {
        let mut last_seen: HashMap<NodeId, Instant> = HashMap::new();
        let mut addresses_at = Instant::now();
        let mut tick = tokio::time::interval(KEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(connected) = net.connected().await else {
                return;
            };
            let now = Instant::now();
            let connected: HashSet<NodeId> = connected
                .iter()
                .map(|p| node_id_of(&p.to_bytes()))
                .collect();
            let view = election.view();
            for id in view.voters.iter().chain(&view.learners) {
                // A member is "seen" from this node's start until it is found missing.
                let seen = last_seen.entry(*id).or_insert(now);
                if connected.contains(id) || *id == election.id() {
                    *seen = now;
                }
            }
            if view.leader != Some(election.id()) {
                continue;
            }
            if now.duration_since(addresses_at) >= ADDRESSES_EVERY {
                addresses_at = now;
                update_addresses(&election, &net).await;
            }
            if !view.learners.is_empty() {
                match election
                    .promote_learners(|id| connected.contains(&id))
                    .await
                {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::info!(voters = ?ids, "members promoted to voters");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::debug!("promoting learners failed (retrying): {err}"),
                }
            }
            if let Some(after) = demote_after {
                let gone: BTreeSet<NodeId> = view
                    .voters
                    .iter()
                    .filter(|id| last_seen.get(id).is_some_and(|t| now - *t >= after))
                    .copied()
                    .collect();
                if !gone.is_empty() {
                    match election.demote_voters(gone.clone()).await {
                        Ok(()) => tracing::warn!(
                            voters = ?gone,
                            "voters unseen for {} s are learners now; they become voters again when back",
                            after.as_secs()
                        ),
                        Err(err) => tracing::debug!("demoting unseen voters failed: {err}"),
                    }
                }
            }
        }
    });
}

/// Removes a member for good (`chorus remove PEER`): on the leader, the member leaves the
/// membership; every node then refuses its connections. `peer` is a PeerId or its last
/// characters, as `chorus peers` shows them.
pub async fn remove(election: &ElectionNode, me: PeerId, peer: &str) -> Result<String, String> {
    let peer = peer.trim();
    if peer.len() < 6 {
        return Err(format!(
            "'{peer}' is too short to name a member; give at least 6 characters of its PeerId (`chorus peers`)"
        ));
    }
    let members: Vec<PeerId> = election
        .members()
        .values()
        .filter_map(|m| PeerId::from_bytes(&m.peer_id).ok())
        .collect();
    let matching: Vec<PeerId> = members
        .iter()
        .filter(|p| p.to_string().ends_with(peer))
        .copied()
        .collect();
    let target = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "no member's PeerId ends with {peer}; `chorus peers` lists them"
            ));
        }
        _ => {
            return Err(format!(
                "several members' PeerIds end with {peer}; give more of it"
            ));
        }
    };
    if target == me {
        return Err("this is the node you are asking; ask another member to remove it".to_owned());
    }
    let view = election.view();
    if view.leader != Some(election.id()) {
        let leader = view
            .leader
            .and_then(|l| election.members().get(&l).cloned())
            .and_then(|m| PeerId::from_bytes(&m.peer_id).ok())
            .map_or("unknown just now".to_owned(), |p| p.to_string());
        return Err(format!(
            "only the leader changes the membership; the leader is {leader}: run `chorus remove` on its machine (or retry when this node leads)"
        ));
    }
    election
        .remove_member(node_id_of(&target.to_bytes()))
        .await
        .map_err(|e| format!("removing {target} failed: {e}"))?;
    tracing::warn!(peer = %target, "a member was removed from the share");
    Ok(target.to_string())
}

/// The first half of `chorus rekey`, on the leader: every other member leaves the membership,
/// and every node that sees the change refuses them. Returns their PeerIds.
pub async fn evict_all(election: &ElectionNode, me: PeerId) -> Result<Vec<String>, String> {
    let view = election.view();
    if view.leader != Some(election.id()) {
        return Err(
            "only the leader changes the membership: run `chorus rekey` on the leader's machine (`chorus status` names it)"
                .to_owned(),
        );
    }
    let members = election.members();
    let removed = election
        .remove_all_but_self()
        .await
        .map_err(|e| format!("removing the other members failed: {e}"))?;
    let removed: Vec<String> = removed
        .iter()
        .filter_map(|id| members.get(id))
        .filter_map(|m| PeerId::from_bytes(&m.peer_id).ok())
        .filter(|p| *p != me)
        .map(|p| p.to_string())
        .collect();
    tracing::warn!(
        removed = removed.len(),
        "every other member was removed from the share (chorus rekey)"
    );
    Ok(removed)
}

/// Tells the election whether this node reaches a majority of the voters (itself and the
/// voters connected now, directly or through a relay): a node that does not, does not campaign
/// (see [`ElectionNode::set_reach`]). Logged when it changes.
pub fn update_reach(election: &ElectionNode, connected: &BTreeSet<PeerId>, was: &mut Option<bool>) {
    let me = election.id();
    let v = election.view();
    if !v.voters.contains(&me) {
        return;
    }
    let reached = v
        .voters
        .iter()
        .filter(|id| **id == me || connected.iter().any(|p| node_id_of(&p.to_bytes()) == **id))
        .count();
    let majority = v.voters.len() / 2 + 1;
    let reaches = reached >= majority;
    if *was != Some(reaches) {
        if reaches {
            tracing::info!(
                reached,
                voters = v.voters.len(),
                "this node reaches a majority of the voters"
            );
        } else {
            // Info, not a warning: it is what every node of a group that stops one by one
            // sees, and a partition's minority already says so through `chorus status`.
            tracing::info!(
                reached,
                voters = v.voters.len(),
                "this node reaches fewer than a majority of the voters; it will not campaign until it does"
            );
        }
        *was = Some(reaches);
    }
    election.set_reach(reaches);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_addresses_leave_out_circuits_and_loopback_when_there_is_more() {
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        let relay = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let got = recordable(&[
            a("/ip4/127.0.0.1/tcp/7000"),
            a("/ip4/192.168.1.5/tcp/7000"),
            a("/ip4/192.168.1.5/udp/7000/quic-v1"),
            a("/ip4/0.0.0.0/tcp/7000"),
            a(&format!(
                "/ip4/203.0.113.7/tcp/4001/p2p/{relay}/p2p-circuit"
            )),
            a("/ip4/192.168.1.5/tcp/7000"),
        ]);
        assert_eq!(
            got,
            vec![
                "/ip4/192.168.1.5/tcp/7000",
                "/ip4/192.168.1.5/udp/7000/quic-v1"
            ]
        );
        // One machine: loopback is all there is, and it is kept.
        assert_eq!(
            recordable(&[a("/ip4/127.0.0.1/tcp/7000")]),
            vec!["/ip4/127.0.0.1/tcp/7000"]
        );
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| a(&format!("/ip4/10.0.0.{i}/tcp/1")))
            .collect();
        assert_eq!(recordable(&many).len(), MAX_RECORDED);
    }
}
