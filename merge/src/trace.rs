//! Real editing traces (the `josephg/editing-traces` format) and their replay through the WOOT
//! engine. Parsing takes bytes (gzipped JSON), never a path: reading the file is the caller's.
//!
//! A sequential trace is replayed as local edits of one site. A concurrent trace is replayed
//! with one replica per agent: before an agent applies a transaction, its replica receives the
//! operations of every transaction in the transaction's history it has not seen yet, so the
//! positions of the transaction mean what they meant to its author; the operations it produces
//! are recorded and, at the end, every replica and a fresh one that receives all operations
//! agree.

use std::io::Read;

use serde::Deserialize;

use crate::woot::{Doc, Op, Site, WootError};

/// One edit: at code-point position `pos`, delete `del` code points, then insert `ins`.
#[derive(Debug, Clone, Deserialize)]
pub struct Patch(pub usize, pub usize, pub String);

/// One transaction: its patches, and for concurrent traces its parents and agent.
#[derive(Debug, Clone, Deserialize)]
pub struct Txn {
    #[serde(default)]
    pub parents: Vec<usize>,
    #[serde(default)]
    pub agent: u32,
    pub patches: Vec<Patch>,
}

/// A trace: sequential when it has no `numAgents`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    #[serde(default)]
    pub start_content: String,
    pub end_content: String,
    #[serde(default)]
    pub num_agents: Option<u32>,
    pub txns: Vec<Txn>,
}

/// Why a trace could not be read or replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("not gzip: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("not a trace: {0}")]
    Json(#[from] serde_json::Error),
    #[error("transaction {txn}: {why}")]
    Invalid { txn: usize, why: String },
    #[error("transaction {txn}: {source}")]
    Woot {
        txn: usize,
        #[source]
        source: WootError,
    },
}

impl Trace {
    /// Parses a gzipped JSON trace.
    pub fn from_gzip(bytes: &[u8]) -> Result<Trace, TraceError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut json)?;
        Ok(serde_json::from_slice(&json)?)
    }

    pub fn is_concurrent(&self) -> bool {
        self.num_agents.is_some()
    }

    /// Number of patches over all transactions.
    pub fn patch_count(&self) -> usize {
        self.txns.iter().map(|t| t.patches.len()).sum()
    }
}

/// The site of the single author of a sequential replay.
const AUTHOR: Site = match Site::new(1) {
    Some(s) => s,
    None => unreachable!(),
};

/// Replays a sequential trace as local edits of one site; returns the final text.
pub fn replay_sequential(trace: &Trace) -> Result<String, TraceError> {
    let mut doc: Doc<char> = Doc::new();
    let mut buf: Vec<char> = trace.start_content.chars().collect();
    if !buf.is_empty() {
        doc.insert_local(AUTHOR, 0, &buf)
            .map_err(|source| TraceError::Woot { txn: 0, source })?;
    }
    for (i, txn) in trace.txns.iter().enumerate() {
        for Patch(pos, del, ins) in &txn.patches {
            apply_patch(&mut doc, AUTHOR, *pos, *del, ins, &mut buf, None)
                .map_err(|source| TraceError::Woot { txn: i, source })?;
        }
    }
    Ok(doc.to_vec().into_iter().collect())
}

fn apply_patch(
    doc: &mut Doc<char>,
    site: Site,
    pos: usize,
    del: usize,
    ins: &str,
    buf: &mut Vec<char>,
    mut ops: Option<&mut Vec<Op<char>>>,
) -> Result<(), WootError> {
    if del > 0 {
        let d = doc.delete(pos, del)?;
        if let Some(ops) = ops.as_deref_mut() {
            ops.extend(d);
        }
    }
    if !ins.is_empty() {
        buf.clear();
        buf.extend(ins.chars());
        match ops {
            Some(ops) => ops.push(doc.insert(site, pos, buf)?),
            None => {
                doc.insert_local(site, pos, buf)?;
            }
        }
    }
    Ok(())
}

/// The outcome of a concurrent replay.
pub struct ConcurrentReplay {
    /// The text of a fresh replica that received every operation in transaction order.
    pub merged: String,
    /// The text of each agent's replica after it received every operation.
    pub replicas: Vec<String>,
    /// The operations of each transaction.
    pub ops: Vec<Vec<Op<char>>>,
}

/// Replays a concurrent trace with one replica per agent (site = agent + 1).
pub fn replay_concurrent(trace: &Trace) -> Result<ConcurrentReplay, TraceError> {
    let agents = trace.num_agents.unwrap_or(1) as usize;
    let n = trace.txns.len();
    let mut docs: Vec<Doc<char>> = (0..agents).map(|_| Doc::new()).collect();
    let mut seen: Vec<Vec<bool>> = vec![vec![false; n]; agents];
    let mut ops: Vec<Vec<Op<char>>> = Vec::with_capacity(n);
    let mut buf = Vec::new();
    let mut stack = Vec::new();
    let mut todo = Vec::new();
    for (t, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent as usize;
        let invalid = |why: String| TraceError::Invalid { txn: t, why };
        if a >= agents {
            return Err(invalid(format!("agent {a} of {agents}")));
        }
        let site = Site::new(txn.agent + 1).ok_or_else(|| invalid("agent overflow".into()))?;
        // Deliver the transaction's unseen history, in transaction order (a topological order).
        stack.clear();
        todo.clear();
        for &p in &txn.parents {
            if p >= t {
                return Err(invalid(format!("parent {p} is not earlier")));
            }
            stack.push(p);
        }
        while let Some(x) = stack.pop() {
            if seen[a][x] {
                continue;
            }
            seen[a][x] = true;
            todo.push(x);
            stack.extend(trace.txns[x].parents.iter().copied().filter(|&p| p < x));
        }
        todo.sort_unstable();
        for &x in &todo {
            for op in &ops[x] {
                docs[a]
                    .apply(op.clone())
                    .map_err(|source| TraceError::Woot { txn: t, source })?;
            }
        }
        let mut mine = Vec::new();
        for Patch(pos, del, ins) in &txn.patches {
            apply_patch(
                &mut docs[a],
                site,
                *pos,
                *del,
                ins,
                &mut buf,
                Some(&mut mine),
            )
            .map_err(|source| TraceError::Woot { txn: t, source })?;
        }
        seen[a][t] = true;
        ops.push(mine);
    }
    let mut fresh: Doc<char> = Doc::new();
    for op in ops.iter().flatten() {
        fresh
            .apply(op.clone())
            .map_err(|source| TraceError::Woot { txn: n, source })?;
    }
    let mut replicas = Vec::with_capacity(agents);
    for (a, doc) in docs.iter_mut().enumerate() {
        for (t, txn_ops) in ops.iter().enumerate() {
            if !seen[a][t] {
                for op in txn_ops {
                    doc.apply(op.clone())
                        .map_err(|source| TraceError::Woot { txn: t, source })?;
                }
            }
        }
        replicas.push(doc.to_vec().into_iter().collect());
    }
    Ok(ConcurrentReplay {
        merged: fresh.to_vec().into_iter().collect(),
        replicas,
        ops,
    })
}
