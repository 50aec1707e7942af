//! What the daemon's process tests share: groups of real `chorus` processes formed with
//! `init`/`invite`/`join`/`run` (`group`), a cluster
//! formed with explicit peers (`cluster`), running the binary itself (`procs`), and the network
//! alone on loopback (`net`). The
//! in-process engine tests live in chorus-sync's own tests, on its test `World`.

#![allow(dead_code)]

pub mod cluster;
pub mod group;
pub mod net;
pub mod procs;
