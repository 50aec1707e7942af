//! How an engine behaves: merge modes, how merged bytes are cut into chunks, frame and delta
//! bounds, and the retry intervals of the protocol.

use std::fmt;
use std::sync::Arc;

use chorus_chunking::ChunkerParams;
use chorus_chunking::chunker::chunk_lengths;
use chorus_chunking::delta::{ApplyLimits, EncodeOptions};
use chorus_merge::ModeRules;
use chorus_proto::Limits;

/// Cuts bytes into chunks: the chunk lengths in order, summing to the input's length. The
/// leader uses it for the bytes a merge produces; the default is FastCDC with the share's
/// chunk sizes, so merged files chunk exactly as scanned ones do.
pub type Cutter = Arc<dyn Fn(&[u8]) -> Vec<u32> + Send + Sync>;

/// The engine's settings.
#[derive(Clone)]
pub struct EngineConfig {
    /// Merge modes per path (globs, sniffing, single-document shares).
    pub rules: ModeRules,
    /// How merged bytes are chunked.
    pub cutter: Cutter,
    /// Frame bounds: every message built stays under `limits.max_frame`.
    pub limits: Limits,
    /// Bounds on what one received delta may make this node do.
    pub apply_limits: ApplyLimits,
    /// How deltas are encoded (the literal budget keeps one message under the frame bound;
    /// new chunks beyond it are fetched with NeedChunks).
    pub encode: EncodeOptions,
    /// A push without an answer is sent again (same base) after this long.
    pub push_retry_ms: u64,
    /// An offer (replication or catch-up) without a Stored answer is sent again after this long.
    pub offer_retry_ms: u64,
    /// A proposal that has not committed is proposed again after this long (re-proposing the
    /// head's version is idempotent in the log).
    pub propose_retry_ms: u64,
    /// A Want without an Offer in return is sent again after this long.
    pub want_retry_ms: u64,
}

impl EngineConfig {
    /// LAN defaults with FastCDC at `params` for merged bytes.
    pub fn new(rules: ModeRules, params: ChunkerParams) -> Self {
        EngineConfig {
            rules,
            cutter: Arc::new(move |bytes: &[u8]| chunk_lengths(bytes, params)),
            limits: Limits::default(),
            apply_limits: ApplyLimits::default(),
            encode: EncodeOptions::default(),
            push_retry_ms: 2_000,
            offer_retry_ms: 1_000,
            propose_retry_ms: 2_000,
            want_retry_ms: 1_000,
        }
    }
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("rules", &self.rules)
            .field("limits", &self.limits)
            .field("push_retry_ms", &self.push_retry_ms)
            .field("offer_retry_ms", &self.offer_retry_ms)
            .field("propose_retry_ms", &self.propose_retry_ms)
            .field("want_retry_ms", &self.want_retry_ms)
            .finish_non_exhaustive()
    }
}
