//! One module per `chorus` subcommand.

pub mod delta;
