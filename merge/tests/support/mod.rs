//! Shared by the integration tests and the benchmark: where the editing traces live and how
//! to read one (the library itself does no I/O).

#![allow(dead_code)]

use std::path::PathBuf;

use chorus_merge::trace::Trace;

/// The traces folder: `$CHORUS_TRACES`, else `shared/data/traces` beside the repository.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("CHORUS_TRACES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/traces"
        )),
    }
}

/// Reads `<name>.json.gz` from the traces folder, panicking with where it looked.
pub fn load_trace(name: &str) -> Trace {
    let path = traces_dir().join(format!("{name}.json.gz"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the editing trace {} ({e}); the traces are looked for in \
             $CHORUS_TRACES or else in shared/data/traces beside the repository",
            path.display()
        )
    });
    Trace::from_gzip(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
