//! The Raft codec: what a peer sends on `/chorus/raft/1` (a JSON `RaftRpc`, or a `RaftReply`
//! to our request) is decoded without panicking, and whatever decodes re-encodes and decodes
//! to the same JSON.
#![no_main]

use chorus_election::{RaftReply, RaftRpc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rpc) = serde_json::from_slice::<RaftRpc>(data) {
        let again = serde_json::to_vec(&rpc).expect("a decoded RPC encodes");
        let back: RaftRpc = serde_json::from_slice(&again).expect("and decodes again");
        assert_eq!(
            serde_json::to_vec(&back).expect("encodes"),
            again,
            "a round trip changes nothing"
        );
    }
    if let Ok(reply) = serde_json::from_slice::<RaftReply>(data) {
        let again = serde_json::to_vec(&reply).expect("a decoded reply encodes");
        assert!(serde_json::from_slice::<RaftReply>(&again).is_ok());
    }
});
