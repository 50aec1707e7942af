//! What the daemon's process tests share: groups of real `chorus` processes formed with
//! `init`/`invite`/`join`/`run` (`group`), a cluster
//! formed with explicit peers (`cluster`), and running the binary itself (`procs`). The
//! in-process engine tests live in chorus-sync's own tests, on its test `World`.

#![allow(dead_code)]

pub mod cluster;
pub mod group;
pub mod procs;
