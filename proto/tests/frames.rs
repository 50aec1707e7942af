//! Every message round-trips through a frame, and no input makes the decoder panic.

use chorus_proto::*;
use proptest::prelude::*;

fn vid(b: u8) -> VersionId {
    VersionId::from_bytes([b; 32])
}
fn cid(b: u8) -> ChunkId {
    ChunkId::from_bytes([b; 32])
}
fn num(major: u64, minor: u32) -> VersionNumber {
    VersionNumber { major, minor }
}

fn sample_manifest() -> TreeManifest {
    TreeManifest {
        entries: vec![
            TreeEntry {
                path: "docs".into(),
                kind: EntryKind::Dir as i32,
                ..Default::default()
            },
            TreeEntry {
                path: "docs/a.txt".into(),
                kind: EntryKind::File as i32,
                mode: 0o755,
                size: 7,
                content: Some(tree_entry::Content::Manifest(FileManifest {
                    chunks: vec![ChunkRef {
                        id: Some(cid(1)),
                        len: 7,
                    }],
                })),
            },
            TreeEntry {
                path: "link".into(),
                kind: EntryKind::Symlink as i32,
                content: Some(tree_entry::Content::LinkTarget("docs/a.txt".into())),
                ..Default::default()
            },
        ],
    }
}

fn sample_delta() -> Delta {
    Delta {
        base: Some(vid(1)),
        target: Some(vid(2)),
        base_manifest: Some(sample_manifest()),
        external: vec![ChunkRef {
            id: Some(cid(9)),
            len: 100,
        }],
        literals: vec![Literal {
            compression: Compression::ZstdDict as i32,
            chunk_lens: vec![10, 20],
            dictionary: vec![0],
            data: b"compressed".to_vec(),
        }],
        changes: vec![FileChange {
            path: "docs/a.txt".into(),
            kind: EntryKind::File as i32,
            mode: 0o600,
            link_target: String::new(),
            runs: vec![0, 1, 2, 2],
        }],
        removed: vec!["old".into()],
        packed: Vec::new(),
    }
}

fn every_body() -> Vec<Body> {
    vec![
        Body::Push(Push {
            number: Some(num(7, 2)),
            delta: Some(sample_delta()),
            pushed_before: vec![vid(4), vid(5)],
            displaced: Vec::new(),
        }),
        Body::Accepted(Accepted {
            version: Some(vid(3)),
            number: Some(num(8, 0)),
        }),
        Body::Merged(Merged {
            pushed: Some(vid(2)),
            number: Some(num(9, 1)),
            delta: Some(sample_delta()),
        }),
        Body::NeedBase(NeedBase {
            base: Some(vid(1)),
            target: Some(vid(2)),
        }),
        Body::NeedChunks(NeedChunks {
            target: Some(vid(2)),
            ids: vec![cid(4), cid(5)],
            runs: Vec::new(),
        }),
        Body::Chunks(Chunks {
            chunks: vec![ChunkData {
                id: Some(cid(4)),
                compression: Compression::Zstd as i32,
                data: vec![1, 2, 3],
            }],
            groups: vec![ChunkGroup {
                ids: vec![cid(6), cid(7)],
                lens: vec![10, 20],
                dictionary: vec![cid(8)],
                data: vec![4, 5, 6],
            }],
        }),
        Body::NotLeader(NotLeader {
            leader_peer_id: vec![0; 38],
            leader_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        }),
        Body::NotLeader(NotLeader::default()),
        Body::Rejected(Rejected {
            reason: RejectReason::HashMismatch as i32,
            detail: "chunk 04.. does not match its id".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    let limits = Limits::default();
    for body in every_body() {
        let frame = encode_frame(body.clone());
        let env = decode_frame(&frame, &limits).unwrap_or_else(|e| panic!("{}: {e}", body.name()));
        assert_eq!(env.protocol_version, PROTOCOL_VERSION);
        assert_eq!(env.body.as_ref(), Some(&body), "{}", body.name());
    }
}

#[test]
fn oversized_frame_is_refused_before_decoding() {
    let limits = Limits {
        max_frame: 64,
        ..Limits::default()
    };
    let frame = encode_frame(every_body().remove(0));
    assert!(matches!(
        decode_frame(&frame, &limits),
        Err(DecodeError::TooLarge { max: 64, .. })
    ));
    let header = (u32::MAX).to_be_bytes();
    assert!(matches!(
        check_frame_len(header, &Limits::default()),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn truncated_and_padded_frames_are_refused() {
    let frame = encode_frame(every_body().remove(0));
    let limits = Limits::default();
    for cut in [0, 1, 3, 4, frame.len() / 2, frame.len() - 1] {
        assert!(
            matches!(
                decode_frame(&frame[..cut], &limits),
                Err(DecodeError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
    let mut padded = frame.clone();
    padded.push(0);
    assert!(matches!(
        decode_frame(&padded, &limits),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn wrong_protocol_version_and_empty_body_are_refused() {
    use prost::Message;
    let limits = Limits::default();
    let env = Envelope {
        protocol_version: 99,
        body: every_body().pop(),
    };
    let bytes = env.encode_to_vec();
    assert_eq!(
        decode_envelope(&bytes, &limits),
        Err(DecodeError::UnsupportedVersion { got: 99 })
    );
    let env = Envelope {
        protocol_version: PROTOCOL_VERSION,
        body: None,
    };
    assert_eq!(
        decode_envelope(&env.encode_to_vec(), &limits),
        Err(DecodeError::EmptyBody)
    );
}

#[test]
fn bounds_are_enforced() {
    let limits = Limits {
        max_entries: 4,
        max_path_len: 12,
        ..Limits::default()
    };
    let too_many = Body::NeedChunks(NeedChunks {
        target: Some(vid(1)),
        ids: vec![cid(1), cid(2), cid(3), cid(4), cid(5)],
        runs: Vec::new(),
    });
    assert!(matches!(
        decode_frame(&encode_frame(too_many), &limits),
        Err(DecodeError::TooManyEntries {
            field: "NeedChunks.ids",
            len: 5,
            max: 4
        })
    ));
    let mut d = sample_delta();
    d.base_manifest = None;
    d.external.clear();
    d.removed = vec!["a-very-long-path".into()];
    let long_path = Body::Push(Push {
        number: Some(num(1, 0)),
        delta: Some(d),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    });
    let got = decode_frame(&encode_frame(long_path), &limits);
    assert!(
        matches!(
            got,
            Err(DecodeError::PathTooLong {
                field: "Delta.removed",
                ..
            })
        ),
        "{got:?}"
    );
    let short_hash = Body::Accepted(Accepted {
        version: Some(VersionId { hash: vec![1; 31] }),
        number: Some(num(1, 0)),
    });
    assert!(matches!(
        decode_frame(&encode_frame(short_hash), &Limits::default()),
        Err(DecodeError::BadHash { len: 31, .. })
    ));
    let mut d = sample_delta();
    d.changes[0].runs.push(5);
    let odd_runs = Body::Push(Push {
        number: Some(num(1, 0)),
        delta: Some(d),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    });
    assert!(matches!(
        decode_frame(&encode_frame(odd_runs), &Limits::default()),
        Err(DecodeError::Invalid {
            field: "FileChange.runs",
            ..
        })
    ));
    let mut d = sample_delta();
    d.literals[0].compression = 42;
    let bad_enum = Body::Push(Push {
        number: Some(num(1, 0)),
        delta: Some(d),
        pushed_before: Vec::new(),
        displaced: Vec::new(),
    });
    assert!(matches!(
        decode_frame(&encode_frame(bad_enum), &Limits::default()),
        Err(DecodeError::Invalid {
            field: "Literal.compression",
            ..
        })
    ));
    let push = |pushed_before| {
        encode_frame(Body::Push(Push {
            number: Some(num(1, 0)),
            delta: Some(sample_delta()),
            pushed_before,
            displaced: Vec::new(),
        }))
    };
    // Permission bits beyond rwx (set-id, sticky, file type) never get past the decoder.
    for (field, bad) in [("FileChange.mode", 0o4755), ("TreeEntry.mode", 0o100644)] {
        let mut d = sample_delta();
        if field == "FileChange.mode" {
            d.changes[0].mode = bad;
        } else {
            d.base_manifest.as_mut().unwrap().entries[1].mode = bad;
        }
        let body = Body::Push(Push {
            number: Some(num(1, 0)),
            delta: Some(d),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        });
        let got = decode_frame(&encode_frame(body), &Limits::default());
        assert!(
            matches!(got, Err(DecodeError::Invalid { field: f, .. }) if f == field),
            "{got:?}"
        );
    }
    let too_many = push(vec![vid(1); chorus_proto::MAX_PUSHED_BEFORE + 1]);
    assert!(matches!(
        decode_frame(&too_many, &Limits::default()),
        Err(DecodeError::Invalid {
            field: "Push.pushed_before",
            ..
        })
    ));
    let short_id = push(vec![VersionId { hash: vec![1; 5] }]);
    assert!(matches!(
        decode_frame(&short_id, &Limits::default()),
        Err(DecodeError::BadHash {
            field: "Push.pushed_before",
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes, &Limits::default());
        let _ = decode_envelope(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..9,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut frame = encode_frame(every_body().swap_remove(which));
        for (idx, b) in flips {
            let i = idx.index(frame.len());
            frame[i] ^= b;
        }
        let _ = decode_frame(&frame, &Limits::default());
    }
}

/// A delta's paths come packed or listed, never both.
#[test]
fn a_delta_packs_its_paths_or_lists_them_not_both() {
    let mut d = sample_delta();
    d.packed = vec![1, 2, 3];
    let push = |d: Delta| {
        Body::Push(Push {
            number: Some(num(1, 0)),
            delta: Some(d),
            pushed_before: Vec::new(),
            displaced: Vec::new(),
        })
    };
    let got = decode_frame(&encode_frame(push(d.clone())), &Limits::default());
    assert!(
        matches!(
            got,
            Err(DecodeError::Invalid {
                field: "Delta.packed",
                ..
            })
        ),
        "{got:?}"
    );
    d.changes.clear();
    d.removed.clear();
    assert!(decode_frame(&encode_frame(push(d)), &Limits::default()).is_ok());
}

/// A NeedChunks' runs lie within its ids, in order, without overlap; a group's lengths match
/// its ids and stay within the chunk bound. Anything else is refused before the engine sees it.
#[test]
fn runs_and_groups_are_checked_at_decoding() {
    let limits = Limits::default();
    let run = |first, count| ChunkRun {
        first,
        count,
        dictionary: vec![cid(9)],
    };
    let need = |runs: Vec<ChunkRun>| {
        Body::NeedChunks(NeedChunks {
            target: Some(vid(1)),
            ids: vec![cid(1), cid(2), cid(3), cid(4)],
            runs,
        })
    };
    assert!(decode_frame(&encode_frame(need(vec![run(0, 2), run(2, 2)])), &limits).is_ok());
    for bad in [
        vec![run(0, 3), run(2, 2)],
        vec![run(2, 1), run(0, 1)],
        vec![run(3, 2)],
        vec![run(1, 0)],
        vec![run(u32::MAX, 2)],
    ] {
        let got = decode_frame(&encode_frame(need(bad.clone())), &limits);
        assert!(
            matches!(
                got,
                Err(DecodeError::Invalid {
                    field: "NeedChunks.runs",
                    ..
                })
            ),
            "{bad:?}: {got:?}"
        );
    }
    let group = |ids: usize, lens: Vec<u32>| {
        Body::Chunks(Chunks {
            chunks: Vec::new(),
            groups: vec![ChunkGroup {
                ids: (0..ids as u8).map(cid).collect(),
                lens,
                dictionary: vec![cid(9)],
                data: vec![0; 8],
            }],
        })
    };
    assert!(decode_frame(&encode_frame(group(2, vec![5, 6])), &limits).is_ok());
    for (n, lens) in [
        (2, vec![5]),
        (0, vec![]),
        (1, vec![0]),
        (1, vec![(16 << 20) + 1]),
    ] {
        let got = decode_frame(&encode_frame(group(n, lens.clone())), &limits);
        assert!(
            matches!(
                got,
                Err(DecodeError::Invalid {
                    field: "ChunkGroup.lens",
                    ..
                })
            ),
            "{n} ids, {lens:?}: {got:?}"
        );
    }
}
