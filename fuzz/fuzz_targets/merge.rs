//! Three-way content merges of arbitrary bytes in every mode: never a panic, and the result
//! does not depend on argument order when each side keeps its number (the deterministic
//! transpose).
#![no_main]

use chorus_chunking::VersionNumber;
use chorus_merge::{MergeMode, merge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    // Three inputs separated by 0xFF bytes.
    let mut parts = rest.splitn(3, |&b| b == 0xFF);
    let (Some(base), Some(a), Some(b)) = (parts.next(), parts.next(), parts.next()) else { return };
    let mode = match selector % 3 {
        0 => MergeMode::Lines,
        1 => MergeMode::Chars,
        _ => MergeMode::Whole,
    };
    let (na, nb) = (VersionNumber::new(3, 1), VersionNumber::new(3, 2));
    let ab = merge(base, a, b, na, nb, mode);
    let ba = merge(base, b, a, nb, na, mode);
    match (ab, ba) {
        (Ok(x), Ok(y)) => assert_eq!(x.result, y.result, "merge is not symmetric in {mode:?}"),
        (Err(_), Err(_)) => {}
        (x, y) => panic!("one order merged and the other did not: {x:?} / {y:?}"),
    }
});
