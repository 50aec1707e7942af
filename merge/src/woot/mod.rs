//! The WOOT sequence engine (the second seed): a replicated sequence of tokens where every
//! element has an id `(site, clock)`, a value, a visibility flag and the two neighbours it was
//! inserted between (`cp`, `cn`). Operations are `ins(cp < c < cn)` and `del(c)`; deletion
//! leaves a tombstone; operations that are not yet applicable wait in a pool.
//!
//! Integration follows WOOTO (Weiss, Urso, Molli 2007): every element has a degree, one more
//! than the larger degree of its neighbours; among the elements strictly between `cp` and `cn`
//! only those of minimal degree are compared with the new one, by id, and the search recurses
//! into the gap found. Every replica that integrates the same operations, in any order the pool
//! allows, holds the same sequence.
//!
//! Speed comes from the `tree` submodule: elements typed one after the other form one run, an
//! order-statistics B-tree maps visible positions to runs, an index maps ids to leaves, and a
//! cursor cache serves sequential typing without a descent. A local insertion names as
//! neighbours the two elements (tombstones included) around the cursor, so its own integration
//! never has to search.
//!
//! The engine is generic over the token: bytes, chars, interned lines.

#[cfg(test)]
mod tests;
mod tree;

use std::collections::HashMap;
use std::fmt::Debug;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use tree::{IAnchor, Run, Tree};

/// A site (replica, author) of a sequence. Never 0: the ends of the sequence use no site.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Site(NonZeroU32);

impl Site {
    /// The site numbered `n`, None for 0.
    pub const fn new(n: u32) -> Option<Site> {
        match NonZeroU32::new(n) {
            Some(n) => Some(Site(n)),
            None => None,
        }
    }

    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// The id of one element: its site and that site's clock. Ordered by site, then clock: this is
/// the order that decides ties.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ElemId {
    pub site: Site,
    pub clock: u32,
}

/// A neighbour named by an insertion: one of the two ends, or an element.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Anchor {
    Begin,
    Elem(ElemId),
    End,
}

/// An operation on a sequence.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Op<T> {
    /// A run of insertions from one site: element `k` has id `(id.site, id.clock + k)`; the
    /// first is inserted between `cp` and `cn`, each later one between its predecessor in the
    /// run and `cn` (exactly what typing produces).
    Insert {
        id: ElemId,
        cp: Anchor,
        cn: Anchor,
        values: Vec<T>,
    },
    /// Deletes the elements `(target.site, target.clock + k)` for `k < len`.
    Delete { target: ElemId, len: u32 },
}

/// What a token must be to live in a sequence.
pub trait Token: Copy + Default + Eq + Debug {}
impl<T: Copy + Default + Eq + Debug> Token for T {}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WootError {
    #[error("position {pos} is past the end of a sequence of {len}")]
    OutOfRange { pos: usize, len: usize },
    #[error("an operation with no elements")]
    Empty,
    #[error("clock overflow: the site's clock passed 2^32")]
    ClockOverflow,
    #[error("insertion {id:?} names neighbours in the wrong order (cn before cp)")]
    Misordered { id: ElemId },
    #[error("insertion {id:?} reuses an id that holds another element")]
    Duplicate { id: ElemId },
    #[error("insertion {id:?} lies more than {MAX_CLOCK_GAP} clocks past its site's last element")]
    ClockGap { id: ElemId },
}

/// How far past a site's last known element an insertion may start. Clocks index per-site
/// arrays, so an operation from a faulty or hostile peer must not make them huge.
pub const MAX_CLOCK_GAP: u32 = 1 << 24;

struct SiteData<T> {
    site: Site,
    values: Vec<T>,
}

/// One replica of a sequence.
pub struct Doc<T> {
    tree: Tree,
    sites: Vec<SiteData<T>>,
    site_ix: HashMap<Site, u32>,
    /// The site looked up last by a local edit, usually the next one's too.
    last_site: Option<(Site, u32)>,
    /// Pending operations, by the first element each one still waits for.
    pool: HashMap<ElemId, Vec<Op<T>>>,
    pooled: usize,
}

impl<T: Token> Default for Doc<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Token> Doc<T> {
    /// The empty sequence.
    pub fn new() -> Self {
        Doc {
            tree: Tree::new(),
            sites: Vec::new(),
            site_ix: HashMap::new(),
            last_site: None,
            pool: HashMap::new(),
            pooled: 0,
        }
    }

    /// Number of visible elements.
    pub fn len(&self) -> usize {
        self.tree.visible_len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of elements, tombstones included.
    pub fn total_len(&self) -> usize {
        self.tree.total_len() as usize
    }

    /// Operations received but not yet applicable.
    pub fn pending(&self) -> usize {
        self.pooled
    }

    /// The visible values in order.
    pub fn to_vec(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        for r in self.tree.runs().filter(|r| r.visible) {
            let v = &self.sites[r.s as usize].values;
            out.extend_from_slice(&v[r.clock as usize..(r.clock + r.len) as usize]);
        }
        out
    }

    /// Every element, tombstones included, in order: id, value, visible.
    pub fn elements(&self) -> Vec<(ElemId, T, bool)> {
        let mut out = Vec::with_capacity(self.total_len());
        for r in self.tree.runs() {
            let sd = &self.sites[r.s as usize];
            for c in r.clock..r.clock + r.len {
                out.push((
                    ElemId {
                        site: sd.site,
                        clock: c,
                    },
                    sd.values[c as usize],
                    r.visible,
                ));
            }
        }
        out
    }

    /// The next clock `site` will use for a local insertion.
    pub fn next_clock(&self, site: Site) -> u32 {
        self.site_ix
            .get(&site)
            .map_or(0, |&s| self.sites[s as usize].values.len() as u32)
    }

    fn dense(&mut self, site: Site) -> u32 {
        if let Some((last, s)) = self.last_site
            && last == site
        {
            return s;
        }
        if let Some(&s) = self.site_ix.get(&site) {
            self.last_site = Some((site, s));
            return s;
        }
        let s = self.sites.len() as u32;
        self.sites.push(SiteData {
            site,
            values: Vec::new(),
        });
        self.site_ix.insert(site, s);
        self.tree.add_site();
        s
    }

    fn store(&mut self, s: u32, clock: u32, values: &[T]) {
        let v = &mut self.sites[s as usize].values;
        let end = clock as usize + values.len();
        if v.len() < end {
            v.resize(end, T::default());
        }
        v[clock as usize..end].copy_from_slice(values);
    }

    fn ext(&self, a: IAnchor) -> Anchor {
        match a {
            IAnchor::Begin => Anchor::Begin,
            IAnchor::End => Anchor::End,
            IAnchor::Elem { s, c } => Anchor::Elem(ElemId {
                site: self.sites[s as usize].site,
                clock: c,
            }),
        }
    }

    /// The internal anchor, None when it names an element not integrated here.
    fn int(&self, a: Anchor) -> Option<IAnchor> {
        match a {
            Anchor::Begin => Some(IAnchor::Begin),
            Anchor::End => Some(IAnchor::End),
            Anchor::Elem(id) => {
                let &s = self.site_ix.get(&id.site)?;
                self.tree
                    .contains(s, id.clock)
                    .then_some(IAnchor::Elem { s, c: id.clock })
            }
        }
    }

    fn degree(&self, a: IAnchor) -> u32 {
        match a {
            IAnchor::Elem { s, c } => self
                .tree
                .locate(s, c)
                .map_or(0, |cur| self.tree.degree(cur)),
            _ => 0,
        }
    }

    /// Inserts `values` at visible position `pos` as site `site`; returns the operation to send.
    pub fn insert(&mut self, site: Site, pos: usize, values: &[T]) -> Result<Op<T>, WootError> {
        let (id, cp, cn) = self.insert_local(site, pos, values)?;
        Ok(Op::Insert {
            id,
            cp,
            cn,
            values: values.to_vec(),
        })
    }

    /// Inserts `values` at visible position `pos` as site `site`; returns the id of the first
    /// element and its neighbours, which is [`Op::Insert`] without the values.
    pub fn insert_local(
        &mut self,
        site: Site,
        pos: usize,
        values: &[T],
    ) -> Result<(ElemId, Anchor, Anchor), WootError> {
        let len = self.len();
        if pos > len {
            return Err(WootError::OutOfRange { pos, len });
        }
        let n = u32::try_from(values.len()).map_err(|_| WootError::ClockOverflow)?;
        if n == 0 {
            return Err(WootError::Empty);
        }
        let s = self.dense(site);
        let clock = self.sites[s as usize].values.len() as u32;
        clock.checked_add(n).ok_or(WootError::ClockOverflow)?;
        let (after, next) = if pos == 0 {
            (None, self.tree.first())
        } else {
            let cur = self
                .tree
                .find_visible(pos as u64 - 1)
                .ok_or(WootError::OutOfRange { pos, len })?;
            (Some(cur), self.tree.succ(cur))
        };
        let cp = after.map_or(IAnchor::Begin, |c| self.tree.anchor(c));
        let cn = next.map_or(IAnchor::End, |c| self.tree.anchor(c));
        let dp = after.map_or(0, |c| self.tree.degree(c));
        let dn = next.map_or(0, |c| self.tree.degree(c));
        let degree = dp.max(dn).saturating_add(1);
        self.store(s, clock, values);
        self.tree.insert_after(
            after,
            Run {
                s,
                clock,
                len: n,
                degree,
                cp,
                cn,
                visible: true,
            },
        );
        Ok((ElemId { site, clock }, self.ext(cp), self.ext(cn)))
    }

    /// Deletes `len` visible elements from `pos`; returns the operations to send.
    pub fn delete(&mut self, pos: usize, len: usize) -> Result<Vec<Op<T>>, WootError> {
        let total = self.len();
        let end = pos
            .checked_add(len)
            .ok_or(WootError::OutOfRange { pos, len: total })?;
        if end > total {
            return Err(WootError::OutOfRange {
                pos: end,
                len: total,
            });
        }
        let mut ops = Vec::new();
        let mut rem = len as u64;
        while rem > 0 {
            let cur = self
                .tree
                .find_visible(pos as u64)
                .ok_or(WootError::OutOfRange { pos, len: total })?;
            let r = *self.tree.run(cur);
            let k = u64::from(r.len - cur.off).min(rem) as u32;
            ops.push(Op::Delete {
                target: ElemId {
                    site: self.sites[r.s as usize].site,
                    clock: r.clock + cur.off,
                },
                len: k,
            });
            self.tree.hide(cur, k);
            rem -= u64::from(k);
        }
        Ok(ops)
    }

    /// Receives an operation from any site: integrates it when applicable, else pools it until
    /// the elements it depends on arrive; integrates whatever in the pool became applicable.
    /// Receiving an operation twice is harmless.
    pub fn apply(&mut self, op: Op<T>) -> Result<(), WootError> {
        validate(&op)?;
        if let Op::Insert { id, .. } = &op
            && id.clock - self.next_clock(id.site).min(id.clock) > MAX_CLOCK_GAP
        {
            return Err(WootError::ClockGap { id: *id });
        }
        let mut ready = Vec::new();
        match self.missing(&op) {
            Some(dep) => self.park(dep, op),
            None => ready.push(op),
        }
        while let Some(op) = ready.pop() {
            let created = self.integrate(op)?;
            if let Some((site, from, to)) = created
                && !self.pool.is_empty()
            {
                for clock in from..to {
                    if let Some(waiting) = self.pool.remove(&ElemId { site, clock }) {
                        self.pooled -= waiting.len();
                        for op in waiting {
                            match self.missing(&op) {
                                Some(dep) => self.park(dep, op),
                                None => ready.push(op),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn park(&mut self, dep: ElemId, op: Op<T>) {
        self.pool.entry(dep).or_default().push(op);
        self.pooled += 1;
    }

    /// An element the operation needs that is not here yet.
    fn missing(&self, op: &Op<T>) -> Option<ElemId> {
        let absent = |a: &Anchor| match a {
            Anchor::Elem(id) if self.int(*a).is_none() => Some(*id),
            _ => None,
        };
        match op {
            Op::Insert { cp, cn, .. } => absent(cp).or_else(|| absent(cn)),
            Op::Delete { target, len } => {
                let s = self.site_ix.get(&target.site);
                (target.clock..target.clock + len)
                    .find(|&c| !s.is_some_and(|&s| self.tree.contains(s, c)))
                    .map(|clock| ElemId {
                        site: target.site,
                        clock,
                    })
            }
        }
    }

    /// Integrates an applicable operation; returns the ids it created, as (site, from, to).
    fn integrate(&mut self, op: Op<T>) -> Result<Option<(Site, u32, u32)>, WootError> {
        match op {
            Op::Insert { id, cp, cn, values } => {
                let s = self.dense(id.site);
                let n = values.len() as u32;
                let present = (id.clock..id.clock + n)
                    .filter(|&c| self.tree.contains(s, c))
                    .count();
                if present == n as usize {
                    return Ok(None); // a duplicate delivery
                }
                if present > 0 {
                    return Err(WootError::Duplicate { id });
                }
                let (Some(cp), Some(cn)) = (self.int(cp), self.int(cn)) else {
                    return Ok(None); // unreachable: missing() was checked
                };
                if !self.ordered(cp, cn) {
                    return Err(WootError::Misordered { id });
                }
                self.store(s, id.clock, &values);
                self.integrate_run(s, id.clock, n, cp, cn);
                Ok(Some((id.site, id.clock, id.clock + n)))
            }
            Op::Delete { target, len } => {
                let Some(&s) = self.site_ix.get(&target.site) else {
                    return Ok(None);
                };
                let end = target.clock + len;
                let mut c = target.clock;
                while c < end {
                    let Some(cur) = self.tree.locate(s, c) else {
                        break;
                    };
                    let r = *self.tree.run(cur);
                    let k = (r.len - cur.off).min(end - c);
                    self.tree.hide(cur, k);
                    c += k;
                }
                Ok(None)
            }
        }
    }

    /// True when `a` lies before `b` in the sequence.
    fn ordered(&self, a: IAnchor, b: IAnchor) -> bool {
        match (a, b) {
            (IAnchor::End, _) | (_, IAnchor::Begin) => false,
            (IAnchor::Begin, _) | (_, IAnchor::End) => true,
            (IAnchor::Elem { s: s1, c: c1 }, IAnchor::Elem { s: s2, c: c2 }) => {
                match (self.tree.locate(s1, c1), self.tree.locate(s2, c2)) {
                    (Some(x), Some(y)) => self.tree.position(x) < self.tree.position(y),
                    _ => false,
                }
            }
        }
    }

    /// Compares an element's id with `(s, c)` in the tie-breaking order.
    fn id_less(&self, a: IAnchor, s: u32, c: u32) -> bool {
        match a {
            IAnchor::Elem { s: s2, c: c2 } => {
                (self.sites[s2 as usize].site, c2) < (self.sites[s as usize].site, c)
            }
            IAnchor::Begin => true,
            IAnchor::End => false,
        }
    }

    /// The run pieces strictly between `a` and `b`: the first element and its degree of each.
    /// Within a run degrees grow by one per element, so only a piece's first element can have
    /// the minimal degree.
    fn between(&self, a: IAnchor, b: IAnchor, out: &mut Vec<(IAnchor, u32)>) {
        out.clear();
        let mut cur = match a {
            IAnchor::Begin => self.tree.first(),
            IAnchor::End => None,
            IAnchor::Elem { s, c } => self.tree.locate(s, c).and_then(|x| self.tree.succ(x)),
        };
        let stop = match b {
            IAnchor::Elem { s, c } => self.tree.locate(s, c),
            _ => None,
        };
        while let Some(x) = cur {
            if Some(x) == stop {
                break;
            }
            out.push((self.tree.anchor(x), self.tree.degree(x)));
            if let Some(st) = stop
                && st.leaf == x.leaf
                && st.run == x.run
                && st.off > x.off
            {
                break;
            }
            cur = self.tree.next_run(x);
        }
    }

    /// WOOTO's IntegrateIns for the run `(s, c..c+n)` inserted between `cp` and `cn`.
    fn integrate_run(&mut self, s: u32, c: u32, n: u32, cp: IAnchor, cn: IAnchor) {
        let dn = self.degree(cn);
        let mut prev = cp;
        let mut pieces = Vec::new();
        let mut list = Vec::new();
        let mut k = 0;
        while k < n {
            let (mut a, mut b) = (prev, cn);
            loop {
                self.between(a, b, &mut pieces);
                if pieces.is_empty() {
                    break;
                }
                let dmin = pieces.iter().map(|p| p.1).min().unwrap_or(0);
                list.clear();
                list.push(a);
                list.extend(pieces.iter().filter(|p| p.1 == dmin).map(|p| p.0));
                list.push(b);
                let mut i = 1;
                while i < list.len() - 1 && self.id_less(list[i], s, c + k) {
                    i += 1;
                }
                a = list[i - 1];
                b = list[i];
            }
            // Placed right before `b`: when `b` is `cn`, the rest of the run follows at once.
            let len = if b == cn { n - k } else { 1 };
            let degree = self.degree(prev).max(dn).saturating_add(1);
            let after = match a {
                IAnchor::Elem { s, c } => self.tree.locate(s, c),
                _ => None,
            };
            self.tree.insert_after(
                after,
                Run {
                    s,
                    clock: c + k,
                    len,
                    degree,
                    cp: prev,
                    cn,
                    visible: true,
                },
            );
            prev = IAnchor::Elem {
                s,
                c: c + k + len - 1,
            };
            k += len;
        }
    }

    #[cfg(test)]
    fn check(&self) {
        self.tree.check();
    }
}

fn validate<T>(op: &Op<T>) -> Result<(), WootError> {
    let (clock, n) = match op {
        Op::Insert { id, values, .. } => (
            id.clock,
            u32::try_from(values.len()).map_err(|_| WootError::ClockOverflow)?,
        ),
        Op::Delete { target, len } => (target.clock, *len),
    };
    if n == 0 {
        return Err(WootError::Empty);
    }
    clock.checked_add(n).ok_or(WootError::ClockOverflow)?;
    Ok(())
}
