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

#[test]
fn the_raft_database_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("a temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    // SAFETY: umask has no preconditions; a permissive umask must not widen the file.
    let before = unsafe { libc_umask(0) };
    let opened = rt.block_on(chorus_election::log_store::open(dir.path()));
    unsafe { libc_umask(before) };
    drop(opened.expect("the store opens"));
    let mode = std::fs::metadata(dir.path().join("raft.redb"))
        .expect("raft.redb exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

unsafe extern "C" {
    #[link_name = "umask"]
    fn libc_umask(mask: u32) -> u32;
}
