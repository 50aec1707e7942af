//! The order-statistics B-tree that holds a WOOT sequence as runs of elements.
//!
//! Leaves hold [`Run`]s (consecutive elements from one site that were typed one after the
//! other), internal nodes hold per-child counts of all elements and of visible ones, so a
//! visible position finds its element in O(log n), and every leaf knows its parent, so an
//! element found through the id index ([`Tree::leaf_of`]) is reached without a scan. A leaf
//! that overflows moves its smaller half (counted in elements) to a new sibling, which keeps
//! the cost of updating the id index low even when one run holds a megabyte.

/// Index of a leaf or an internal node in its arena.
pub(crate) type Ix = u32;
/// No node / not integrated.
pub(crate) const NIL: Ix = u32::MAX;

const LEAF_MAX: usize = 32;
const NODE_MAX: usize = 16;

/// Where an element's neighbour lies: the two ends of the sequence or an element, whose site
/// is the dense index of the site in the document (not the public site id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum IAnchor {
    Begin,
    End,
    Elem { s: u32, c: u32 },
}

/// Consecutive elements `clock..clock+len` of site `s`. Element `k` has degree `degree + k`,
/// previous neighbour `cp` for `k = 0` and element `k - 1` otherwise, and next neighbour `cn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub s: u32,
    pub clock: u32,
    pub len: u32,
    pub degree: u32,
    pub cp: IAnchor,
    pub cn: IAnchor,
    pub visible: bool,
}

impl Run {
    /// The part of this run from offset `k` on.
    fn suffix(&self, k: u32) -> Run {
        debug_assert!(k > 0 && k < self.len);
        Run {
            s: self.s,
            clock: self.clock + k,
            len: self.len - k,
            degree: self.degree + k,
            cp: IAnchor::Elem {
                s: self.s,
                c: self.clock + k - 1,
            },
            cn: self.cn,
            visible: self.visible,
        }
    }

    /// True when `next` continues this run exactly, so the two can be one run.
    pub fn continued_by(&self, next: &Run) -> bool {
        self.s == next.s
            && self.clock + self.len == next.clock
            && self.visible == next.visible
            && self.cn == next.cn
            && self.degree + self.len == next.degree
            && next.cp
                == (IAnchor::Elem {
                    s: self.s,
                    c: self.clock + self.len - 1,
                })
    }

    fn visible_len(&self) -> u64 {
        if self.visible { u64::from(self.len) } else { 0 }
    }
}

struct Leaf {
    runs: Vec<Run>,
    parent: Ix,
    next: Ix,
}

#[derive(Clone, Copy)]
struct Kid {
    ix: Ix,
    total: u64,
    visible: u64,
}

struct Node {
    kids: Vec<Kid>,
    parent: Ix,
    /// The kids are leaves (else internal nodes).
    leaves: bool,
}

/// A cursor on one element: leaf, run index in the leaf, offset in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub leaf: Ix,
    pub run: usize,
    pub off: u32,
}

/// The sequence: runs in document order, with counts, an id index and a cursor cache.
pub(crate) struct Tree {
    leaves: Vec<Leaf>,
    nodes: Vec<Node>,
    root: Ix,
    head: Ix,
    /// Per dense site, per clock: the leaf holding that element, or NIL.
    index: Vec<Vec<Ix>>,
    /// Leaf of the last visible lookup, the visible position where it starts and its number
    /// of visible elements.
    cache: Option<(Ix, u64, u64)>,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            leaves: vec![Leaf {
                runs: Vec::with_capacity(LEAF_MAX + 1),
                parent: 0,
                next: NIL,
            }],
            nodes: vec![Node {
                kids: vec![Kid {
                    ix: 0,
                    total: 0,
                    visible: 0,
                }],
                parent: NIL,
                leaves: true,
            }],
            root: 0,
            head: 0,
            index: Vec::new(),
            cache: None,
        }
    }

    pub fn add_site(&mut self) {
        self.index.push(Vec::new());
    }

    pub fn total_len(&self) -> u64 {
        self.nodes[self.root as usize]
            .kids
            .iter()
            .map(|k| k.total)
            .sum()
    }

    pub fn visible_len(&self) -> u64 {
        self.nodes[self.root as usize]
            .kids
            .iter()
            .map(|k| k.visible)
            .sum()
    }

    /// The leaf holding element `(s, c)`, or NIL when it is not integrated.
    pub fn leaf_of(&self, s: u32, c: u32) -> Ix {
        self.index
            .get(s as usize)
            .and_then(|v| v.get(c as usize))
            .copied()
            .unwrap_or(NIL)
    }

    pub fn contains(&self, s: u32, c: u32) -> bool {
        self.leaf_of(s, c) != NIL
    }

    pub fn run(&self, cur: Cursor) -> &Run {
        &self.leaves[cur.leaf as usize].runs[cur.run]
    }

    /// The cursor of an integrated element.
    pub fn locate(&self, s: u32, c: u32) -> Option<Cursor> {
        let leaf = self.leaf_of(s, c);
        if leaf == NIL {
            return None;
        }
        let runs = &self.leaves[leaf as usize].runs;
        runs.iter()
            .position(|r| r.s == s && r.clock <= c && c < r.clock + r.len)
            .map(|run| Cursor {
                leaf,
                run,
                off: c - runs[run].clock,
            })
    }

    /// The position of the element at `cur` among all elements, tombstones included.
    pub fn position(&self, cur: Cursor) -> u64 {
        let leaf = &self.leaves[cur.leaf as usize];
        let mut pos: u64 = leaf.runs[..cur.run]
            .iter()
            .map(|r| u64::from(r.len))
            .sum::<u64>()
            + u64::from(cur.off);
        let mut child = cur.leaf;
        let mut node = leaf.parent;
        while node != NIL {
            let n = &self.nodes[node as usize];
            pos += n
                .kids
                .iter()
                .take_while(|k| k.ix != child)
                .map(|k| k.total)
                .sum::<u64>();
            child = node;
            node = n.parent;
        }
        pos
    }

    /// The element at a cursor as an anchor.
    pub fn anchor(&self, cur: Cursor) -> IAnchor {
        let r = self.run(cur);
        IAnchor::Elem {
            s: r.s,
            c: r.clock + cur.off,
        }
    }

    pub fn degree(&self, cur: Cursor) -> u32 {
        self.run(cur).degree + cur.off
    }

    /// The first element of the whole sequence.
    pub fn first(&self) -> Option<Cursor> {
        self.first_from(self.head)
    }

    /// The first element of the first non-empty leaf from `leaf` on.
    fn first_from(&self, mut leaf: Ix) -> Option<Cursor> {
        while leaf != NIL {
            if !self.leaves[leaf as usize].runs.is_empty() {
                return Some(Cursor {
                    leaf,
                    run: 0,
                    off: 0,
                });
            }
            leaf = self.leaves[leaf as usize].next;
        }
        None
    }

    /// The element after `cur` (visible or not), None at the end.
    pub fn succ(&self, cur: Cursor) -> Option<Cursor> {
        let l = &self.leaves[cur.leaf as usize];
        if cur.off + 1 < l.runs[cur.run].len {
            return Some(Cursor {
                off: cur.off + 1,
                ..cur
            });
        }
        self.next_run(cur)
    }

    /// The first element of the run after the run of `cur`.
    pub fn next_run(&self, cur: Cursor) -> Option<Cursor> {
        let l = &self.leaves[cur.leaf as usize];
        if cur.run + 1 < l.runs.len() {
            return Some(Cursor {
                leaf: cur.leaf,
                run: cur.run + 1,
                off: 0,
            });
        }
        self.first_from(l.next)
    }

    /// The visible element at visible index `pos` (`pos < visible_len`).
    pub fn find_visible(&mut self, pos: u64) -> Option<Cursor> {
        let (leaf, start) = match self.cache {
            Some((leaf, start, len)) if pos >= start && pos < start + len => (leaf, start),
            _ => {
                let (leaf, start) = self.descend_visible(pos)?;
                self.cache = Some((leaf, start, self.leaf_visible(leaf)));
                (leaf, start)
            }
        };
        let mut rem = pos - start;
        for (i, r) in self.leaves[leaf as usize].runs.iter().enumerate() {
            let v = r.visible_len();
            if rem < v {
                return Some(Cursor {
                    leaf,
                    run: i,
                    off: rem as u32,
                });
            }
            rem -= v;
        }
        None
    }

    fn leaf_visible(&self, leaf: Ix) -> u64 {
        self.leaves[leaf as usize]
            .runs
            .iter()
            .map(Run::visible_len)
            .sum()
    }

    fn descend_visible(&self, mut pos: u64) -> Option<(Ix, u64)> {
        let mut node = self.root;
        let mut start = 0;
        loop {
            let n = &self.nodes[node as usize];
            let kid = n.kids.iter().find(|k| {
                if pos < k.visible {
                    true
                } else {
                    pos -= k.visible;
                    start += k.visible;
                    false
                }
            })?;
            if n.leaves {
                return Some((kid.ix, start));
            }
            node = kid.ix;
        }
    }

    /// Adds `total` and `visible` to the counts of every ancestor of `leaf`.
    fn add_counts(&mut self, leaf: Ix, total: i64, visible: i64) {
        match &mut self.cache {
            Some((l, _, len)) if *l == leaf => *len = len.wrapping_add_signed(visible),
            _ => self.cache = None,
        }
        let mut child = leaf;
        let mut node = self.leaves[leaf as usize].parent;
        let mut leaves = true;
        while node != NIL {
            let n = &mut self.nodes[node as usize];
            debug_assert_eq!(n.leaves, leaves);
            if let Some(k) = n.kids.iter_mut().find(|k| k.ix == child) {
                k.total = k.total.wrapping_add_signed(total);
                k.visible = k.visible.wrapping_add_signed(visible);
            }
            child = node;
            node = n.parent;
            leaves = false;
        }
    }

    fn set_index(&mut self, run: &Run, leaf: Ix) {
        let v = &mut self.index[run.s as usize];
        let end = (run.clock + run.len) as usize;
        if v.len() < end {
            v.resize(end, NIL);
        }
        v[run.clock as usize..end].fill(leaf);
    }

    /// Splits the run at `cur` so that an element boundary lies before `cur.off`; returns the
    /// cursor of the run starting at that element. The leaf may split, so cursors taken before
    /// are invalid afterwards.
    pub fn split_before(&mut self, cur: Cursor) -> Cursor {
        if cur.off == 0 {
            return cur;
        }
        let leaf = &mut self.leaves[cur.leaf as usize];
        let r = leaf.runs[cur.run];
        let right = r.suffix(cur.off);
        leaf.runs[cur.run].len = cur.off;
        leaf.runs.insert(cur.run + 1, right);
        self.fix_overflow(cur.leaf);
        let (s, c) = (right.s, right.clock);
        self.locate(s, c).unwrap_or(cur)
    }

    /// Inserts `run` right after the element at `after` (or at the very front when `after` is
    /// None), merging it into the preceding run when it continues it.
    pub fn insert_after(&mut self, after: Option<Cursor>, run: Run) {
        let (leaf, idx) = match after {
            None => (self.head, 0),
            Some(cur) => {
                let len = self.run(cur).len;
                if cur.off + 1 < len {
                    let c = self.split_before(Cursor {
                        off: cur.off + 1,
                        ..cur
                    });
                    (c.leaf, c.run)
                } else {
                    (cur.leaf, cur.run + 1)
                }
            }
        };
        let total = i64::from(run.len);
        let visible = run.visible_len() as i64;
        if idx > 0 {
            let prev = &mut self.leaves[leaf as usize].runs[idx - 1];
            if prev.continued_by(&run) {
                prev.len += run.len;
                self.set_index(&run, leaf);
                self.add_counts(leaf, total, visible);
                return;
            }
        }
        self.leaves[leaf as usize].runs.insert(idx, run);
        self.set_index(&run, leaf);
        self.add_counts(leaf, total, visible);
        self.fix_overflow(leaf);
    }

    /// Hides `len` elements starting at `cur`, all within its run (`cur.off + len <= run.len`).
    /// Returns how many were visible before.
    pub fn hide(&mut self, cur: Cursor, len: u32) -> u32 {
        let r = *self.run(cur);
        debug_assert!(cur.off + len <= r.len);
        if !r.visible {
            return 0;
        }
        let start = self.split_before(cur);
        let (s, c) = (r.s, r.clock + cur.off);
        let piece_len = self.run(start).len;
        if len < piece_len {
            self.split_before(Cursor { off: len, ..start });
        }
        let start = self.locate(s, c).unwrap_or(start);
        let leaf = start.leaf;
        self.leaves[leaf as usize].runs[start.run].visible = false;
        self.add_counts(leaf, 0, -i64::from(len));
        // A tombstone that continues the previous tombstone joins it.
        let runs = &mut self.leaves[leaf as usize].runs;
        if start.run + 1 < runs.len() && runs[start.run].continued_by(&runs[start.run + 1]) {
            runs[start.run].len += runs[start.run + 1].len;
            runs.remove(start.run + 1);
        }
        if start.run > 0 && runs[start.run - 1].continued_by(&runs[start.run]) {
            runs[start.run - 1].len += runs[start.run].len;
            runs.remove(start.run);
        }
        len
    }

    fn fix_overflow(&mut self, leaf: Ix) {
        if self.leaves[leaf as usize].runs.len() > LEAF_MAX {
            self.split_leaf(leaf);
        }
    }

    /// Moves the half of an overflowing leaf with fewer elements into a new sibling.
    fn split_leaf(&mut self, leaf: Ix) {
        self.cache = None;
        let new_ix = self.leaves.len() as Ix;
        let old = &mut self.leaves[leaf as usize];
        let mid = old.runs.len() / 2;
        let left_elems: u64 = old.runs[..mid].iter().map(|r| u64::from(r.len)).sum();
        let right_elems: u64 = old.runs[mid..].iter().map(|r| u64::from(r.len)).sum();
        let parent = old.parent;
        let move_left = left_elems < right_elems;
        let moved: Vec<Run> = if move_left {
            old.runs.drain(..mid).collect()
        } else {
            old.runs.drain(mid..).collect()
        };
        let moved_total: u64 = moved.iter().map(|r| u64::from(r.len)).sum();
        let moved_visible: u64 = moved.iter().map(Run::visible_len).sum();
        let mut runs = Vec::with_capacity(LEAF_MAX + 1);
        runs.extend_from_slice(&moved);
        let new_leaf = if move_left {
            // The new leaf goes before the old one: relink its predecessor.
            let next = leaf;
            if self.head == leaf {
                self.head = new_ix;
            } else {
                let pred = self.pred_leaf(leaf);
                self.leaves[pred as usize].next = new_ix;
            }
            Leaf { runs, parent, next }
        } else {
            let next = old.next;
            old.next = new_ix;
            Leaf { runs, parent, next }
        };
        self.leaves.push(new_leaf);
        for r in &moved {
            self.set_index(r, new_ix);
        }
        let kid = Kid {
            ix: new_ix,
            total: moved_total,
            visible: moved_visible,
        };
        self.insert_kid(parent, leaf, kid, move_left, moved_total, moved_visible);
    }

    /// The leaf before `leaf` in document order (walks up and down the tree).
    fn pred_leaf(&self, leaf: Ix) -> Ix {
        // Up until the child is not the first kid, then down the rightmost path.
        let mut child = leaf;
        let mut node = self.leaves[leaf as usize].parent;
        while node != NIL {
            let n = &self.nodes[node as usize];
            let pos = n.kids.iter().position(|k| k.ix == child).unwrap_or(0);
            if pos > 0 {
                let mut ix = n.kids[pos - 1].ix;
                let mut leaves = n.leaves;
                while !leaves {
                    let m = &self.nodes[ix as usize];
                    ix = m.kids[m.kids.len() - 1].ix;
                    leaves = m.leaves;
                }
                return ix;
            }
            child = node;
            node = n.parent;
        }
        NIL
    }

    /// Inserts `kid` into `node` next to its child `beside` (before it when `before`), whose
    /// counts lose what moved to `kid`; splits `node` when it overflows.
    fn insert_kid(
        &mut self,
        node: Ix,
        beside: Ix,
        kid: Kid,
        before: bool,
        total: u64,
        visible: u64,
    ) {
        let n = &mut self.nodes[node as usize];
        let pos = n.kids.iter().position(|k| k.ix == beside).unwrap_or(0);
        n.kids[pos].total -= total;
        n.kids[pos].visible -= visible;
        n.kids.insert(if before { pos } else { pos + 1 }, kid);
        if n.kids.len() > NODE_MAX {
            self.split_node(node);
        }
    }

    fn split_node(&mut self, node: Ix) {
        let new_ix = self.nodes.len() as Ix;
        let n = &mut self.nodes[node as usize];
        let mid = n.kids.len() / 2;
        let moved: Vec<Kid> = n.kids.drain(mid..).collect();
        let leaves = n.leaves;
        let parent = n.parent;
        let total: u64 = moved.iter().map(|k| k.total).sum();
        let visible: u64 = moved.iter().map(|k| k.visible).sum();
        for k in &moved {
            if leaves {
                self.leaves[k.ix as usize].parent = new_ix;
            } else {
                self.nodes[k.ix as usize].parent = new_ix;
            }
        }
        self.nodes.push(Node {
            kids: moved,
            parent,
            leaves,
        });
        let kid = Kid {
            ix: new_ix,
            total,
            visible,
        };
        if parent == NIL {
            // A new root above the two halves.
            let root_ix = self.nodes.len() as Ix;
            let left = &self.nodes[node as usize];
            let left_kid = Kid {
                ix: node,
                total: left.kids.iter().map(|k| k.total).sum(),
                visible: left.kids.iter().map(|k| k.visible).sum(),
            };
            self.nodes.push(Node {
                kids: vec![left_kid, kid],
                parent: NIL,
                leaves: false,
            });
            self.nodes[node as usize].parent = root_ix;
            self.nodes[new_ix as usize].parent = root_ix;
            self.root = root_ix;
        } else {
            self.insert_kid(parent, node, kid, false, total, visible);
        }
    }

    /// Every run in document order.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        let mut leaf = self.head;
        std::iter::from_fn(move || {
            if leaf == NIL {
                return None;
            }
            let l = &self.leaves[leaf as usize];
            leaf = l.next;
            Some(l.runs.iter())
        })
        .flatten()
    }

    /// Checks every count and link; for tests.
    #[cfg(test)]
    pub fn check(&self) {
        fn walk(t: &Tree, node: Ix, out: &mut Vec<Ix>) -> (u64, u64) {
            let n = &t.nodes[node as usize];
            let (mut tt, mut vv) = (0, 0);
            for k in &n.kids {
                let (a, b) = if n.leaves {
                    assert_eq!(t.leaves[k.ix as usize].parent, node);
                    out.push(k.ix);
                    let runs = &t.leaves[k.ix as usize].runs;
                    (
                        runs.iter().map(|r| u64::from(r.len)).sum(),
                        runs.iter().map(Run::visible_len).sum(),
                    )
                } else {
                    assert_eq!(t.nodes[k.ix as usize].parent, node);
                    walk(t, k.ix, out)
                };
                assert_eq!((a, b), (k.total, k.visible));
                tt += a;
                vv += b;
            }
            (tt, vv)
        }
        let mut order = Vec::new();
        walk(self, self.root, &mut order);
        let mut linked = Vec::new();
        let mut l = self.head;
        while l != NIL {
            linked.push(l);
            l = self.leaves[l as usize].next;
        }
        assert_eq!(order, linked);
        for &l in &order {
            for r in &self.leaves[l as usize].runs {
                for c in r.clock..r.clock + r.len {
                    assert_eq!(self.leaf_of(r.s, c), l);
                }
            }
        }
    }
}
