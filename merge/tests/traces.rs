//! Every real editing trace, replayed through the WOOT engine, ends exactly in `endContent`.

mod support;

use chorus_merge::trace::{replay_concurrent, replay_sequential};
use support::load_trace;

fn sequential(name: &str) {
    let trace = load_trace(name);
    assert!(!trace.is_concurrent());
    let text = replay_sequential(&trace).unwrap();
    assert!(
        text == trace.end_content,
        "{name}: replay differs from endContent"
    );
}

fn concurrent(name: &str) {
    let trace = load_trace(name);
    assert!(trace.is_concurrent());
    let out = replay_concurrent(&trace).unwrap();
    assert!(
        out.merged == trace.end_content,
        "{name}: merged replay differs from endContent"
    );
    for (a, text) in out.replicas.iter().enumerate() {
        assert!(
            *text == trace.end_content,
            "{name}: agent {a}'s replica differs from endContent"
        );
    }
}

#[test]
fn automerge_paper() {
    sequential("automerge-paper");
}

#[test]
fn seph_blog1() {
    sequential("seph-blog1");
}

#[test]
fn rustcode() {
    sequential("rustcode");
}

#[test]
fn friendsforever() {
    concurrent("friendsforever");
}

#[test]
fn clownschool() {
    concurrent("clownschool");
}
