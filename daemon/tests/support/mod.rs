//! What the daemon's process tests share: a group of real `chorus` processes formed with
//! `init`/`invite`/`join`/`run` (`group`), and running the binary itself (`procs`). The
//! in-process engine tests live in chorus-sync's own tests, on its test `World`.

#![allow(dead_code)]

pub mod group;
pub mod procs;
