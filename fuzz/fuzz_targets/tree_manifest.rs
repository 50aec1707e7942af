//! A tree manifest from a peer: validation refuses it with an error or yields a manifest that
//! round-trips to itself with the same VersionId.
#![no_main]

use chorus_chunking::TreeManifest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = chorus_proto::TreeManifest::decode(data) else { return };
    if let Ok(tree) = TreeManifest::from_proto(&wire) {
        let back = TreeManifest::from_proto(&tree.to_proto()).expect("a valid manifest re-validates");
        assert_eq!(back, tree);
        assert_eq!(back.version_id(), tree.version_id());
    }
});
