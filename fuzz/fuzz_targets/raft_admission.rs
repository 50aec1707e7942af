//! Raft admission at the daemon's real bounds: any bytes, decoded as the Raft RPC a peer sends
//! on `/chorus/raft/2`, go through `check_rpc` as if node 2 (a member) sent them to a node whose
//! current term is the input's first eight bytes. Nothing panics, and what is admitted names
//! node 2 as its sender, keeps every term within `MAX_TERM_STEP` of the current one and at
//! most `MAX_TERM`, every log index at most `MAX_INDEX`, and a snapshot chunk within
//! `MAX_SNAPSHOT_BYTES`: nothing that could wrap openraft's `term + 1` or grow a buffer
//! without bound gets through.
#![no_main]

use chorus_election::RaftRpc;
use chorus_election::admission::{
    Local, MAX_INDEX, MAX_SNAPSHOT_BYTES, MAX_TERM, MAX_TERM_STEP, check_rpc,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let term = u64::from_le_bytes(*head);
    let local = Local {
        term,
        members: [1, 2, 3].into(),
    };
    let Ok(rpc) = RaftRpc::from_bytes(body) else {
        return;
    };
    if check_rpc(&local, 2, &rpc).is_err() {
        return;
    }
    let ceiling = term.saturating_add(MAX_TERM_STEP).min(MAX_TERM);
    let vote = match &rpc {
        RaftRpc::AppendEntries(r) => &r.vote,
        RaftRpc::Vote(r) => &r.vote,
        RaftRpc::InstallSnapshot(r) => &r.vote,
        RaftRpc::PreVote(r) => &r.vote,
    };
    assert_eq!(vote.leader_id.node_id, 2, "admitted in another node's name");
    assert!(vote.leader_id.term <= ceiling, "admitted term {}", vote.leader_id.term);
    let mut logs = Vec::new();
    match &rpc {
        RaftRpc::AppendEntries(r) => {
            logs.extend(r.prev_log_id);
            logs.extend(r.leader_commit);
            logs.extend(r.entries.iter().map(|e| e.log_id));
        }
        RaftRpc::Vote(r) => logs.extend(r.last_log_id),
        RaftRpc::PreVote(r) => logs.extend(r.last_log_id),
        RaftRpc::InstallSnapshot(r) => {
            logs.extend(r.meta.last_log_id);
            logs.extend(*r.meta.last_membership.log_id());
            assert!(
                r.offset.saturating_add(r.data.len() as u64) <= MAX_SNAPSHOT_BYTES,
                "admitted a chunk at {}",
                r.offset
            );
        }
    }
    for l in logs {
        assert!(l.leader_id.term <= ceiling, "admitted log term {}", l.leader_id.term);
        assert!(l.index <= MAX_INDEX, "admitted index {}", l.index);
    }
});
