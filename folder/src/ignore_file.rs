//! The name of the per-directory ignore file (gitignore syntax), shared by the scan that
//! reads it and the focus that knows its change reaches beyond the paths the watcher names.

/// The per-directory ignore file, in gitignore syntax.
pub const IGNORE_FILE: &str = ".chorusignore";
