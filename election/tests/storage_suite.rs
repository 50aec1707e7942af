//! The durable log and state machine pass openraft's own storage test suite.

use chorus_election::TypeConfig;
use chorus_election::log_store::LogStore;
use chorus_election::state_machine::StateMachine;
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("a temp dir");
        let (log, sm) = chorus_election::log_store::open(dir.path()).await?;
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft's storage suite failed: {e}");
    }
}
