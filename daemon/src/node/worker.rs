//! The worker: a thread of its own that owns the [`Replica`] (the sync engine and the working
//! folder), in the manner of iroh-docs' actor. Everything that blocks (redb commits with fsync,
//! scans, merges, delta encoding, writing files, history retention) happens here, never on the
//! async runtime, so the network, Raft and the socket keep their pace whatever the folder
//! holds. It is fed through two channels (control inputs, which are never dropped, and peer
//! messages, bounded), wakes on them and on its own deadlines (the engine's next retry, the
//! watcher's debounce, the periodic rescan and retention), and publishes a [`WorkerView`] for
//! the socket and [`api::Event`]s for `/v1/events`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_chunking::ChunkerParams;
use chorus_election::{ElectionNode, ProposeError};
use chorus_proto::header::NodeId;
use chorus_proto::message::Message;
use chorus_sync::{Action, Event, Notice, Refusal, Replica, Retention};
use libp2p::PeerId;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::view::WorkerView;
use super::{background, heap};
use crate::api::{self, Request};
use crate::net::NetHandle;
use chorus_folder::DiskFolder;
use chorus_folder::heard::Heard;
use chorus_folder::watcher::{Change, Debounce};

/// How often history retention runs.
const GC_EVERY: Duration = Duration::from_secs(600);
/// How often the view is published while something changes.
const VIEW_EVERY: Duration = Duration::from_millis(200);
/// How long a proposal may take before it counts as failed (it is proposed again).
const PROPOSE_WITHIN: Duration = Duration::from_secs(5);
/// Peer messages waiting for the worker; beyond this they are dropped (the protocol retries).
pub const MESSAGES_QUEUED: usize = 1024;

/// What the worker is told.
#[derive(Debug)]
pub enum Input {
    /// Raft's news for the engine (from the feed): cluster changes, committed headers, a
    /// confirmed leadership.
    Raft(Vec<Event>),
    /// A proposal did not commit.
    ProposeFailed(chorus_chunking::VersionId),
    /// The watcher heard changes in the share: they wait in [`Worker::heard`].
    FolderChanged,
    /// A request from the socket, and where its answer goes.
    Command {
        request: Request,
        reply: oneshot::Sender<Result<Value, Refusal>>,
    },
}

/// A peer's sync message for the engine.
#[derive(Debug)]
pub struct PeerMessage {
    pub from: NodeId,
    pub message: Message,
}

/// What woke the worker (on the stack for one turn of the loop, so its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Woke {
    Control(Option<Input>),
    Message(Option<PeerMessage>),
    Timer,
}

/// What the worker needs besides its replica.
pub struct Worker {
    pub replica: Replica<DiskFolder>,
    /// Document shares answer history requests about their one file.
    pub document: bool,
    pub chunker: ChunkerParams,
    pub net: NetHandle,
    pub election: Arc<ElectionNode>,
    /// The async runtime, for proposals (Raft is async).
    pub runtime: tokio::runtime::Handle,
    /// Where proposal failures come back.
    pub control: mpsc::UnboundedSender<Input>,
    pub view: watch::Sender<WorkerView>,
    pub events: broadcast::Sender<api::Event>,
    pub debounce: Duration,
    pub rescan_every: Duration,
    pub retention: Retention,
    /// The members' PeerIds, by node id (from the cluster events).
    pub peers: BTreeMap<NodeId, PeerId>,
    /// Present while the share is paused, so a pause outlives a restart.
    pub pause_marker: std::path::PathBuf,
    /// What the watcher heard and this worker has not taken yet.
    pub heard: Arc<Heard>,
}

/// The file in the state dir that says the share is paused.
pub const PAUSE_MARKER: &str = "paused";

/// Unix milliseconds: the engine's retry timers tolerate a clock step (they saturate), and
/// headers carry wall-clock creation times for history retention.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// Starts the worker on a thread of its own; it stops when both channels close.
pub fn spawn(
    worker: Worker,
    control: mpsc::UnboundedReceiver<Input>,
    messages: mpsc::Receiver<PeerMessage>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("chorus-worker".into())
        .spawn(move || {
            // A runtime of its own, on this thread only: waiting on channels and timers is
            // async, everything else blocks this thread and nothing else.
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(worker.run(control, messages)),
                Err(e) => tracing::error!("cannot start the worker: {e}"),
            }
        })
}

/// The worker's timers.
struct Timers {
    /// When the burst not scanned yet is (its paths wait in [`Heard`]).
    debounce: Debounce,
    next_rescan: Instant,
    next_gc: Instant,
    next_view: Instant,
}

impl Worker {
    async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Input>,
        mut messages: mpsc::Receiver<PeerMessage>,
    ) {
        let now = Instant::now();
        let mut t = Timers {
            debounce: Debounce::new(self.debounce),
            next_rescan: now + self.rescan_every,
            next_gc: now + GC_EVERY,
            next_view: now,
        };
        // A pause outlives a restart: nothing is scanned or written until `chorus resume`.
        if self.pause_marker.exists() {
            self.replica.pause();
            tracing::info!("the share is paused (`chorus pause`); `chorus resume` to sync again");
        }
        // The first scan at once; then on changes, and fully every `rescan_every`.
        let out = self.replica.scan(now_ms());
        self.after(out);
        // Then what could not be written before a restart is tried again. Not before that
        // scan: a write never replaces a file the folder has not seen since it started, so
        // a failed path that still held an older file stayed unwritten until the next
        // version (a full disk freed, the daemon restarted, the file still old).
        let out = self.replica.retry_after_restart(now_ms());
        self.after(out);
        self.publish();
        loop {
            let deadline = self.deadline(&t);
            let woke = tokio::select! {
                biased;
                input = control.recv() => Woke::Control(input),
                m = messages.recv() => Woke::Message(m),
                () = tokio::time::sleep_until(deadline.into()) => Woke::Timer,
            };
            let started = Instant::now();
            match woke {
                Woke::Control(Some(input)) => self.input(input, &mut t),
                Woke::Message(Some(PeerMessage { from, message })) => {
                    let out = self
                        .replica
                        .handle(now_ms(), Event::Message { from, message });
                    self.after(out);
                }
                Woke::Timer => self.timers(&mut t),
                Woke::Control(None) | Woke::Message(None) => break,
            }
            if started.elapsed() >= heap::TRIM_AFTER {
                heap::trim();
            }
            if Instant::now() >= t.next_view {
                self.publish();
                t.next_view = Instant::now() + VIEW_EVERY;
            }
        }
        tracing::debug!("the worker stops");
    }

    /// The earliest of the worker's deadlines.
    fn deadline(&self, t: &Timers) -> Instant {
        let now = Instant::now();
        let engine = self.replica.poll_timeout().map(|at| {
            let wait = at.saturating_sub(now_ms());
            now + Duration::from_millis(wait)
        });
        let scan = t.debounce.due(self.heard.writing());
        [
            Some(t.next_rescan),
            Some(t.next_gc),
            Some(t.next_view),
            engine,
            scan,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + GC_EVERY)
    }

    fn input(&mut self, input: Input, t: &mut Timers) {
        match input {
            Input::Raft(events) => {
                for ev in events {
                    if let Event::Cluster(info) = &ev {
                        self.peers = info
                            .peer_ids
                            .iter()
                            .filter_map(|(id, p)| PeerId::from_bytes(p).ok().map(|p| (*id, p)))
                            .collect();
                    }
                    let out = self.replica.handle(now_ms(), ev);
                    self.after(out);
                }
            }
            Input::ProposeFailed(version) => {
                let out = self
                    .replica
                    .handle(now_ms(), Event::ProposeFailed { version });
                self.after(out);
            }
            Input::FolderChanged => {
                self.heard.woken();
                tracing::trace!("the watcher heard a change");
                t.debounce.changed(Instant::now());
            }
            Input::Command { request, reply } => {
                let answer = self.command(request);
                // A refused request may still have started something (a fetch).
                let out = self.replica.take_outbox();
                self.after(Ok(out));
                // What the command changed is visible to the next query at once.
                self.publish();
                let _ = reply.send(answer);
            }
        }
    }

    fn timers(&mut self, t: &mut Timers) {
        let now = Instant::now();
        if t.debounce
            .due(self.heard.writing())
            .is_some_and(|at| now >= at)
        {
            t.debounce.scanned();
            // The paths the watcher named, unless it could not say; the periodic rescan below
            // still looks at everything.
            match self.heard.take() {
                // Scanned already, with an earlier burst's paths.
                Change::Paths(paths) if paths.is_empty() => {}
                Change::Paths(paths) => {
                    let out = self.replica.scan_paths(now_ms(), &paths);
                    self.after(out);
                }
                Change::Unknown => {
                    let out = self.replica.scan(now_ms());
                    self.after(out);
                }
            }
        }
        if now >= t.next_rescan {
            // For what the watcher may have missed: at low priority, the worker waiting.
            let replica = &mut self.replica;
            let out = background::run("chorus-rescan", || replica.scan(now_ms()));
            self.after(out);
            t.next_rescan = Instant::now() + self.rescan_every;
        }
        if now >= t.next_gc {
            // History retention: between events, never between a scan and its Local.
            match self
                .replica
                .engine_mut()
                .collect_garbage(now_ms(), &self.retention)
            {
                Ok(r) => tracing::debug!(?r, "history retention"),
                Err(e) => tracing::warn!("history retention failed: {e}"),
            }
            t.next_gc = Instant::now() + GC_EVERY;
        }
        if self.replica.poll_timeout().is_some_and(|at| at <= now_ms()) {
            let out = self.replica.tick(now_ms());
            self.after(out);
        }
    }

    /// Carries out what the replica asked for, and reports what happened.
    fn after(&mut self, out: Result<Vec<Action>, chorus_sync::EngineError>) {
        match out {
            Ok(actions) => self.act(actions),
            // A local failure (the state dir's disk); the event is lost, the protocol retries.
            Err(e) => tracing::error!("{e}"),
        }
        for notice in self.replica.take_notices() {
            self.notify(notice);
        }
    }

    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, message } => {
                    if let Some(peer) = self.peers.get(&to) {
                        self.net.send(*peer, message.into_body());
                    }
                }
                Action::Propose { proposal, head } => {
                    let election = self.election.clone();
                    let control = self.control.clone();
                    let version = proposal.version;
                    self.runtime.spawn(async move {
                        let proposed = election.propose_on(proposal, head);
                        match tokio::time::timeout(PROPOSE_WITHIN, proposed).await {
                            Ok(Ok(_)) => {}
                            // A newer header committed: the engine hears of it and starts over
                            // from it (reporting a failure would have the stale tree proposed
                            // again meanwhile).
                            Ok(Err(ProposeError::Superseded)) => {
                                tracing::debug!(?version, "proposal superseded by a newer header");
                            }
                            // Not committed, or not known to be: proposed again (a timed-out
                            // proposal that Raft still carries commits at most once, on the
                            // head it names).
                            _ => {
                                let _ = control.send(Input::ProposeFailed(version));
                            }
                        }
                    });
                }
                // The replica writes versions itself.
                Action::Materialize { .. } => {}
            }
        }
    }

    fn notify(&self, notice: Notice) {
        let (kind, detail) = match notice {
            Notice::Scanned { version, entries } => (
                "scanned",
                json!({"version": version.to_string(), "entries": entries}),
            ),
            Notice::Materialized { version, entries } => (
                "materialized",
                json!({"version": version.to_string(), "entries": entries}),
            ),
            Notice::Held {
                version,
                deleting,
                files,
            } => (
                "held",
                json!({"version": version.to_string(), "deleting": deleting, "files": files}),
            ),
            Notice::WriteFailed { path, reason } => (
                "write-failed",
                json!({"path": path.to_string(), "reason": reason}),
            ),
            Notice::Unavailable { reason } => ("unavailable", json!({"reason": reason})),
            Notice::Paused => ("paused", json!({})),
            Notice::Resumed => ("resumed", json!({})),
            Notice::History { kind, detail } => (kind, detail),
        };
        let _ = self.events.send(api::Event {
            kind: kind.to_owned(),
            at_ms: now_ms(),
            detail,
        });
    }

    /// Carries out one request from the socket.
    fn command(&mut self, request: Request) -> Result<Value, Refusal> {
        let now = now_ms();
        let (answer, out) = match request {
            Request::Pause => {
                std::fs::write(&self.pause_marker, b"paused by `chorus pause`\n").map_err(|e| {
                    Refusal::failed(format!(
                        "cannot record the pause in {}: {e}",
                        self.pause_marker.display()
                    ))
                })?;
                self.replica.pause();
                (json!({"paused": true}), Vec::new())
            }
            Request::Resume { confirm } => {
                match std::fs::remove_file(&self.pause_marker) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Refusal::failed(format!(
                            "cannot remove {} (the pause would come back at the next start): {e}",
                            self.pause_marker.display()
                        )));
                    }
                }
                let (released, out) = self.replica.resume(now, confirm)?;
                let answer = match released {
                    Some(v) => json!({"paused": false, "released": v.to_string()}),
                    None => json!({"paused": false}),
                };
                (answer, out)
            }
            Request::Undo => self.replica.undo(now)?,
            Request::Redo {
                entry: Some(seq),
                beside,
            } => self.replica.redo_entry(now, seq, beside, self.chunker)?,
            Request::Redo { entry: None, .. } => self.replica.redo_undo(now)?,
            Request::Restore { version, path } => {
                self.replica
                    .restore(now, &version, path.as_deref(), self.document)?
            }
            Request::Show { version, path } => (
                self.replica.show(&version, &path, self.document)?,
                Vec::new(),
            ),
            Request::Changes { version } => (self.replica.changes(&version)?, Vec::new()),
            Request::Texts { path, from, to } => (
                self.replica.texts(&from, &to, &path, self.document)?,
                Vec::new(),
            ),
            Request::List {
                version,
                path,
                recursive,
            } => (
                self.replica
                    .list(&version, &path, recursive, self.document)?,
                Vec::new(),
            ),
            Request::Invite { .. }
            | Request::Remove { .. }
            | Request::EvictAll
            | Request::ConflictsSeen { .. } => {
                return Err(Refusal::failed("membership is the network side's"));
            }
        };
        self.after(Ok(out));
        Ok(answer)
    }

    /// Publishes what the socket shows of the replica.
    fn publish(&mut self) {
        let (replica, peers) = (&self.replica, &self.peers);
        self.view.send_if_modified(|v| v.refresh(replica, peers));
    }
}
