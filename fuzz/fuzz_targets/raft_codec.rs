//! The Raft codec: what a peer sends on `/chorus/raft/2` (a postcard `RaftRpc`, or a
//! `RaftReply` to our request) is decoded without panicking or allocating past what arrived,
//! and whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use chorus_election::{RaftReply, RaftRpc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rpc) = RaftRpc::from_bytes(data) {
        let again = rpc.to_bytes().expect("a decoded RPC encodes");
        let back = RaftRpc::from_bytes(&again).expect("and decodes again");
        assert_eq!(
            back.to_bytes().expect("encodes"),
            again,
            "a round trip changes nothing"
        );
    }
    if let Ok(reply) = RaftReply::from_bytes(data) {
        let again = reply.to_bytes().expect("a decoded reply encodes");
        assert!(RaftReply::from_bytes(&again).is_ok());
    }
});
