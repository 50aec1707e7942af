//! One module per `chorus` subcommand.

pub mod delta;
pub mod merge_file;
pub mod query;
pub mod run;
