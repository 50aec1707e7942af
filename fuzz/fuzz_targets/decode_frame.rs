//! Any bytes from a peer: the frame decoder returns a typed error or a valid envelope, never
//! panics, and what it accepts re-encodes to a frame it accepts again.
#![no_main]

use chorus_proto::{Limits, decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(env) = decode_frame(data, &limits)
        && let Some(body) = env.body
    {
        let again = encode_frame(body.clone());
        let back = decode_frame(&again, &limits).expect("a re-encoded valid frame decodes");
        assert_eq!(back.body, Some(body));
    }
    let _ = chorus_proto::decode_envelope(data, &limits);
});
