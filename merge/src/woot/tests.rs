//! WOOT's three properties, checked on random concurrent edits from 2–5 sites delivered in
//! random orders: convergence, intention preservation and causality preservation; plus the
//! B-tree's invariants, and runs typed into the same gap that must not interleave.

use proptest::prelude::*;

use super::*;

fn site(n: u32) -> Site {
    Site::new(n).unwrap()
}

/// A deterministic shuffle (splitmix64-driven Fisher–Yates).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

/// Runs a script of local edits and partial syncs on `n` sites; returns every operation in
/// the order it was generated, and the sites' replicas.
fn simulate(n: usize, script: &[(usize, u8, usize, usize)]) -> (Vec<Op<u8>>, Vec<Doc<u8>>) {
    let mut docs: Vec<Doc<u8>> = (0..n).map(|_| Doc::new()).collect();
    let mut log: Vec<(usize, Op<u8>)> = Vec::new();
    let mut seen: Vec<usize> = vec![0; n]; // how much of the log each site has looked at
    let mut value = 0u8;
    for &(s, kind, pos, len) in script {
        let s = s % n;
        let doc = &mut docs[s];
        match kind {
            0..=4 => {
                let at = pos % (doc.len() + 1);
                let vals: Vec<u8> = (0..len)
                    .map(|_| {
                        value = value.wrapping_add(1);
                        value
                    })
                    .collect();
                let op = doc.insert(site(s as u32 + 1), at, &vals).unwrap();
                log.push((s, op));
            }
            5..=7 if !doc.is_empty() => {
                let at = pos % doc.len();
                let k = len.min(doc.len() - at);
                for op in doc.delete(at, k).unwrap() {
                    log.push((s, op));
                }
            }
            _ => {
                // Receive everything new in the log, in log order (a causal order).
                for (from, op) in &log[seen[s]..] {
                    if *from != s {
                        doc.apply(op.clone()).unwrap();
                    }
                }
                seen[s] = log.len();
            }
        }
    }
    for (s, doc) in docs.iter_mut().enumerate() {
        for (from, op) in &log[seen[s]..] {
            if *from != s {
                doc.apply(op.clone()).unwrap();
            }
        }
    }
    (log.into_iter().map(|(_, op)| op).collect(), docs)
}

/// Integrates `ops` in the given order into a fresh replica, checking causality on the way:
/// an operation whose dependencies are missing waits in the pool.
fn deliver(ops: &[Op<u8>]) -> Doc<u8> {
    let mut doc = Doc::new();
    for op in ops {
        let before = doc.pending();
        let ready = match op {
            Op::Insert { cp, cn, .. } => doc.int(*cp).is_some() && doc.int(*cn).is_some(),
            Op::Delete { target, len } => {
                let s = doc.site_ix.get(&target.site).copied();
                (target.clock..target.clock + len)
                    .all(|c| s.is_some_and(|s| doc.tree.contains(s, c)))
            }
        };
        doc.apply(op.clone()).unwrap();
        if !ready {
            assert_eq!(
                doc.pending(),
                before + 1,
                "an operation with missing dependencies was not pooled"
            );
            if let Op::Insert { id, .. } = op {
                let s = doc.site_ix.get(&id.site).copied();
                assert!(
                    !s.is_some_and(|s| doc.tree.contains(s, id.clock)),
                    "integrated before its dependencies"
                );
            }
        }
        // Every integrated element's neighbours are integrated too.
        for r in doc.tree.runs() {
            for a in [r.cp, r.cn] {
                if let IAnchor::Elem { s, c } = a {
                    assert!(
                        doc.tree.contains(s, c),
                        "element integrated before its neighbour"
                    );
                }
            }
        }
    }
    assert_eq!(
        doc.pending(),
        0,
        "operations left in the pool after everything arrived"
    );
    doc.check();
    doc
}

/// Checks intention preservation on a final state: every inserted element lies between its
/// neighbours, and exactly the deleted elements are hidden.
fn check_intentions(doc: &Doc<u8>, ops: &[Op<u8>]) {
    let elems = doc.elements();
    let index: HashMap<ElemId, usize> = elems.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
    let at = |a: &Anchor| -> isize {
        match a {
            Anchor::Begin => -1,
            Anchor::End => elems.len() as isize,
            Anchor::Elem(id) => index[id] as isize,
        }
    };
    let mut deleted = std::collections::HashSet::new();
    let mut inserted = 0;
    for op in ops {
        match op {
            Op::Insert { id, cp, cn, values } => {
                for (k, v) in values.iter().enumerate() {
                    let me = ElemId {
                        site: id.site,
                        clock: id.clock + k as u32,
                    };
                    let prev = if k == 0 {
                        *cp
                    } else {
                        Anchor::Elem(ElemId {
                            clock: me.clock - 1,
                            ..me
                        })
                    };
                    let i = index[&me] as isize;
                    assert!(
                        at(&prev) < i && i < at(cn),
                        "{me:?} is not between its neighbours"
                    );
                    assert_eq!(elems[i as usize].1, *v);
                    inserted += 1;
                }
            }
            Op::Delete { target, len } => {
                for c in target.clock..target.clock + len {
                    deleted.insert(ElemId {
                        site: target.site,
                        clock: c,
                    });
                }
            }
        }
    }
    assert_eq!(elems.len(), inserted);
    for (id, _, visible) in &elems {
        assert_eq!(
            *visible,
            !deleted.contains(id),
            "{id:?}: visibility does not match the deletions"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn concurrent_edits_converge_in_every_delivery_order(
        n in 2usize..=5,
        script in prop::collection::vec((0usize..5, 0u8..10, 0usize..1000, 1usize..5), 1..70),
        seeds in prop::collection::vec(any::<u64>(), 3),
    ) {
        let (ops, sites) = simulate(n, &script);
        let reference = deliver(&ops);
        check_intentions(&reference, &ops);
        let expected = reference.elements();
        for doc in &sites {
            doc.check();
            prop_assert_eq!(doc.elements(), expected.clone());
        }
        for seed in seeds {
            let mut shuffled = ops.clone();
            shuffle(&mut shuffled, seed);
            let doc = deliver(&shuffled);
            prop_assert_eq!(doc.elements(), expected.clone());
        }
        // Delivering everything twice changes nothing.
        let mut twice = Doc::new();
        for op in ops.iter().chain(&ops) {
            twice.apply(op.clone()).unwrap();
        }
        prop_assert_eq!(twice.elements(), expected);
    }

    #[test]
    fn local_edits_match_a_plain_vector(
        script in prop::collection::vec((any::<bool>(), 0usize..10_000, 1usize..40), 1..300),
    ) {
        let mut doc: Doc<u8> = Doc::new();
        let mut plain: Vec<u8> = Vec::new();
        let me = site(7);
        for (i, (ins, pos, len)) in script.into_iter().enumerate() {
            if ins || plain.is_empty() {
                let at = pos % (plain.len() + 1);
                let vals: Vec<u8> = (0..len).map(|k| (i + k) as u8).collect();
                doc.insert(me, at, &vals).unwrap();
                plain.splice(at..at, vals);
            } else {
                let at = pos % plain.len();
                let k = len.min(plain.len() - at);
                doc.delete(at, k).unwrap();
                plain.drain(at..at + k);
            }
            prop_assert_eq!(doc.len(), plain.len());
        }
        doc.check();
        prop_assert_eq!(doc.to_vec(), plain);
    }
}

/// Two sites type into the same gap; the merged text holds each run whole.
fn type_concurrently(forward: [bool; 2]) -> String {
    let mut base: Doc<char> = Doc::new();
    let b = base.insert(site(9), 0, &['[', ']']).unwrap();
    let mut ops = vec![b];
    for (k, text) in ["abcdef", "123456"].iter().enumerate() {
        let mut doc: Doc<char> = Doc::new();
        doc.apply(ops[0].clone()).unwrap();
        for (i, c) in text.chars().enumerate() {
            let pos = if forward[k] { 1 + i } else { 1 };
            ops.push(doc.insert(site(k as u32 + 1), pos, &[c]).unwrap());
        }
    }
    let mut a: Doc<char> = Doc::new();
    for op in &ops {
        a.apply(op.clone()).unwrap();
    }
    let mut rev: Doc<char> = Doc::new();
    rev.apply(ops[0].clone()).unwrap();
    for op in ops[1..].iter().rev() {
        rev.apply(op.clone()).unwrap();
    }
    assert_eq!(a.to_vec(), rev.to_vec());
    a.to_vec().into_iter().collect()
}

#[test]
fn runs_typed_into_the_same_gap_do_not_interleave() {
    assert_eq!(type_concurrently([true, true]), "[abcdef123456]");
    assert_eq!(type_concurrently([false, false]), "[fedcba654321]");
    assert_eq!(type_concurrently([true, false]), "[abcdef654321]");
    assert_eq!(type_concurrently([false, true]), "[fedcba123456]");
}

#[test]
fn the_seed_example_waits_for_its_dependency() {
    // "ab"; ins(a < 1 < b) then ins(a < 3 < 1), received in the opposite order.
    let mut origin: Doc<char> = Doc::new();
    let base = origin.insert(site(1), 0, &['a', 'b']).unwrap();
    let one = origin.insert(site(2), 1, &['1']).unwrap();
    let three = origin.insert(site(2), 1, &['3']).unwrap();
    assert_eq!(origin.to_vec(), ['a', '3', '1', 'b']);
    let mut other: Doc<char> = Doc::new();
    other.apply(base).unwrap();
    other.apply(three).unwrap();
    assert_eq!((other.to_vec(), other.pending()), (vec!['a', 'b'], 1));
    other.apply(one).unwrap();
    assert_eq!(
        (other.to_vec(), other.pending()),
        (vec!['a', '3', '1', 'b'], 0)
    );
}

#[test]
fn bad_operations_are_refused() {
    let mut doc: Doc<u8> = Doc::new();
    assert!(matches!(
        doc.insert(site(1), 1, &[1]),
        Err(WootError::OutOfRange { .. })
    ));
    assert!(matches!(doc.insert(site(1), 0, &[]), Err(WootError::Empty)));
    doc.insert(site(1), 0, &[1, 2, 3]).unwrap();
    assert!(matches!(
        doc.delete(2, 5),
        Err(WootError::OutOfRange { .. })
    ));
    let id = |c| ElemId {
        site: site(1),
        clock: c,
    };
    // cn before cp.
    let bad = Op::Insert {
        id: ElemId {
            site: site(2),
            clock: 0,
        },
        cp: Anchor::Elem(id(2)),
        cn: Anchor::Elem(id(0)),
        values: vec![9],
    };
    assert!(matches!(doc.apply(bad), Err(WootError::Misordered { .. })));
    assert!(matches!(
        doc.apply(Op::Delete {
            target: id(u32::MAX),
            len: 2
        }),
        Err(WootError::ClockOverflow)
    ));
    let far = Op::Insert {
        id: ElemId {
            site: site(3),
            clock: u32::MAX - 1,
        },
        cp: Anchor::Begin,
        cn: Anchor::End,
        values: vec![9],
    };
    assert!(matches!(doc.apply(far), Err(WootError::ClockGap { .. })));
    assert_eq!(doc.to_vec(), [1, 2, 3]);
}

/// An arbitrary operation, well-formed or not, over a few sites and clocks.
fn arbitrary_op() -> impl Strategy<Value = Op<u8>> {
    let id = (1u32..4, 0u32..12).prop_map(|(s, c)| ElemId {
        site: site(s),
        clock: c,
    });
    let anchor = prop_oneof![
        Just(Anchor::Begin),
        Just(Anchor::End),
        id.clone().prop_map(Anchor::Elem)
    ];
    prop_oneof![
        (
            id.clone(),
            anchor.clone(),
            anchor,
            prop::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(id, cp, cn, values)| Op::Insert { id, cp, cn, values }),
        (id, 0u32..5).prop_map(|(target, len)| Op::Delete { target, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Operations from a faulty or hostile peer end in errors or in the pool, never in a
    /// panic or a broken tree, and never change what was there beyond their own elements.
    #[test]
    fn arbitrary_operations_never_break_a_replica(ops in prop::collection::vec(arbitrary_op(), 0..40)) {
        let mut doc: Doc<u8> = Doc::new();
        doc.insert(site(1), 0, &[1, 2, 3, 4]).unwrap();
        for op in ops {
            let _ = doc.apply(op);
            doc.check();
        }
        let elems = doc.elements();
        prop_assert_eq!(elems.len(), doc.total_len());
        prop_assert_eq!(elems.iter().filter(|e| e.2).count(), doc.len());
    }
}
