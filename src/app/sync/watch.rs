//! `sync --watch`: what to reconcile next, unattended. A full reconcile at start and every
//! `--interval`; with `--queue`, the events of an SQS queue in between, each read as a
//! [`Hint`] (`events`) and reconciled in a [`Scope`] of the users and groups it names.
//!
//! The queue's rules: long polls (up to 20 s, never a spin); a message is deleted only after
//! the reconcile that answers it has returned, so its agents' checkpoints are durable (a
//! crash, or a failed reconcile, leaves it to come back after its visibility timeout, which
//! is kept extended while its reconcile runs); an event that changes nothing is deleted at
//! once; one that cannot be read asks for a full reconcile, and is deleted after it. A
//! duplicate or replayed event re-reads the current state, finds nothing to change, and is
//! deleted.
//!
//! One watcher per state store leads (`RunStore::lead`, role [`ROLE`]); a second one on the
//! same store waits as a standby and takes over within one lease period once the leader's
//! lease lapses (a dead leader stops renewing it; a clean exit gives it up at once).
//!
//! The caller (the CLI) runs each reconcile (apply's machinery) and prints; this file
//! decides what comes next and settles the queue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::queue::{Message, QueueApi};

use super::events::{hints, Hint};
use super::Scope;
use crate::app::{ApplyReport, Context, Error, StateStore};

/// The role the leading watcher holds in the state store.
pub const ROLE: &str = "sync-watch";

/// How the watch runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Time between full reconciles.
    pub interval: Duration,
    /// The SQS queue of Identity Center events, if any.
    pub queue: Option<String>,
    /// The leader's lease: a standby takes over within this long after the leader dies.
    pub lease: Duration,
}

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The first one (and the first after taking over from another watcher).
    Start,
    /// `--interval` elapsed.
    Interval,
    /// Events asked for it (a scope, or a full reconcile for an event that could not be read).
    Events,
}

impl Why {
    /// As shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Start => "start",
            Why::Interval => "interval",
            Why::Events => "events",
        }
    }
}

/// An event the watcher read, and what it asked for.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The SQS message id.
    pub message_id: String,
    /// What it asked for.
    pub hints: Vec<Hint>,
    /// When it was received.
    pub received: Instant,
}

/// What comes next.
pub enum Next {
    /// Reconcile (everything, or a scope).
    Reconcile(Work),
    /// Events that changed nothing, already deleted.
    Ignored(Vec<Seen>),
    /// Another watcher leads; this one waits.
    Standby {
        /// Who leads.
        holder: String,
        /// Until when its lease runs, unless renewed (RFC 3339).
        until: String,
    },
    /// Asked to stop.
    Stop,
}

/// A reconcile to run, and the messages it answers.
pub struct Work {
    /// Why.
    pub why: Why,
    /// `None`: everything.
    pub scope: Option<Scope>,
    /// The events it answers.
    pub events: Vec<Seen>,
    /// Events received with them that changed nothing (deleted already).
    pub ignored: Vec<Seen>,
    messages: Vec<Message>,
    /// Keeps the messages invisible while the reconcile runs.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// The longest long poll SQS allows.
const LONG_POLL: Duration = Duration::from_secs(20);

/// The watch's state between reconciles.
pub struct Watcher {
    queue: Option<Arc<dyn QueueApi>>,
    opts: WatchOptions,
    /// The identity store sync reads (learnt from the first reconcile): events of another
    /// store change nothing.
    store_id: Option<String>,
    /// A full reconcile is due now.
    full_due: bool,
    why_full: Why,
    next_full: Instant,
    /// Messages waiting for the next full reconcile.
    pending: Vec<(Message, Seen)>,
    leader: Leader,
    /// How long a received message stays invisible (`env::queue_visibility`).
    visibility: Duration,
    /// Each mapped group's members at the last reconcile (group id → user ids).
    members: BTreeMap<String, BTreeSet<String>>,
    /// Connect's usernames at the last full read (folded → exact).
    connect_usernames: Option<Arc<std::collections::HashMap<String, String>>>,
}

impl Watcher {
    /// A watcher for `ctx`'s state store (the queue's client from the AWS chain).
    pub async fn new(ctx: &Context, opts: WatchOptions) -> Result<Watcher, Error> {
        let queue = match &opts.queue {
            Some(url) => Some(ctx.queue(url).await?),
            None => None,
        };
        if let Some(q) = &queue {
            // Before the first reconcile writes anything: the queue exists and may be read
            // (a message seen by this probe stays visible: visibility 0).
            if let Err(e) = q.receive(1, Duration::ZERO, Duration::ZERO).await {
                if !(e.is_throttling() || e.is_server_or_transport()) {
                    return Err(queue_error(&opts, &e));
                }
            }
        }
        let store = ctx.open_store().await?;
        Ok(Watcher {
            queue,
            leader: Leader::new(store, opts.lease),
            opts,
            store_id: None,
            full_due: true,
            why_full: Why::Start,
            next_full: Instant::now(),
            pending: Vec::new(),
            visibility: crate::app::env::queue_visibility(),
            members: BTreeMap::new(),
            connect_usernames: None,
        })
    }

    /// Waits for what comes next: a reconcile (one is due, or events arrived), events that
    /// changed nothing, standing by, or the stop.
    pub async fn next(&mut self, stop: &AtomicBool) -> Result<Next, Error> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(Next::Stop);
            }
            if let Some((holder, until)) = self.leader.standby(stop).await? {
                // Whoever leads next starts with a full reconcile.
                self.full_due = true;
                self.why_full = Why::Start;
                return Ok(Next::Standby { holder, until });
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(Next::Stop);
            }
            if self.full_due || Instant::now() >= self.next_full {
                let why = match self.full_due {
                    true => self.why_full.clone(),
                    false => Why::Interval,
                };
                let (messages, events) = self.pending.drain(..).unzip();
                return Ok(Next::Reconcile(self.work(why, None, messages, events)));
            }
            let Some(queue) = self.queue.clone() else {
                sleep_until(self.next_full, stop).await;
                continue;
            };
            let wait = LONG_POLL.min(self.next_full.saturating_duration_since(Instant::now()));
            let received = tokio::select! {
                r = queue.receive(10, wait, self.visibility) => r,
                _ = stopped(stop) => return Ok(Next::Stop),
                // Lost the lead (paused past the lease): stand by; what this poll would
                // have received goes to the leader.
                _ = stopped(&self.leader.lost) => continue,
            };
            if self.leader.lost.load(Ordering::SeqCst) {
                // Received just as the lead was lost: left to come back to the leader.
                continue;
            }
            let messages = match received {
                Ok(m) => m,
                // No such queue, no access: said, and the watch ends (exit 2).
                Err(e) if !(e.is_throttling() || e.is_server_or_transport()) => {
                    return Err(queue_error(&self.opts, &e));
                }
                Err(e) => {
                    // The queue is unreachable for now: the interval's reconciles go on.
                    tracing::warn!(error = %e, "receiving from the event queue failed");
                    sleep_until(Instant::now() + Duration::from_secs(5), stop).await;
                    continue;
                }
            };
            if let Some(next) = self.read(queue.as_ref(), messages).await {
                return Ok(next);
            }
        }
    }

    /// The received messages sorted by what they ask: nothing (deleted now), a scope, or a
    /// full reconcile (kept for it).
    async fn read(&mut self, queue: &dyn QueueApi, messages: Vec<Message>) -> Option<Next> {
        let store = self.store_id.clone();
        let (mut ignored, mut scoped) = (Vec::new(), Vec::new());
        let mut scope = Scope {
            connect_usernames: self.connect_usernames.clone(),
            ..Scope::default()
        };
        for m in messages {
            let seen = Seen {
                message_id: m.id.clone(),
                hints: (hints(&m.body, store.as_deref()).into_iter())
                    .map(|h| self.unless_unmapped(h))
                    .collect(),
                received: Instant::now(),
            };
            let mut nothing = true;
            for h in &seen.hints {
                match h {
                    Hint::User(id) => _ = scope.users.insert(id.clone()),
                    Hint::Group(id) => {
                        // Its members now are read again; who left it since, from the last read.
                        scope.groups.insert(id.clone());
                        scope
                            .users
                            .extend(self.members.get(id).into_iter().flatten().cloned());
                    }
                    Hint::Everything(_) => self.full_due = true,
                    Hint::Nothing(_) => continue,
                }
                nothing = false;
            }
            match nothing {
                true => ignored.push((m, seen)),
                false => scoped.push((m, seen)),
            }
        }
        let mut nothing = Vec::new();
        if !ignored.is_empty() {
            let messages: Vec<Message>;
            (messages, nothing) = ignored.into_iter().unzip();
            if let Err(e) = queue.delete(&messages).await {
                tracing::warn!(error = %e, "deleting events that changed nothing failed: they come back");
            }
        }
        if scoped.is_empty() {
            return (!nothing.is_empty()).then_some(Next::Ignored(nothing));
        }
        let mut work = if self.full_due {
            self.why_full = Why::Events;
            self.pending.extend(scoped);
            let (messages, events) = self.pending.drain(..).unzip();
            self.work(Why::Events, None, messages, events)
        } else {
            let (messages, events) = scoped.into_iter().unzip();
            self.work(Why::Events, Some(scope), messages, events)
        };
        work.ignored = nothing;
        Some(Next::Reconcile(work))
    }

    /// A group that is not one of the mapped groups (known once a reconcile has read them:
    /// a mapping error ends the watch, so every mapped group is among them) changes no
    /// agent: its event asks for nothing, rather than for the listings of a group's event.
    fn unless_unmapped(&self, hint: Hint) -> Hint {
        match hint {
            Hint::Group(id) if !self.members.is_empty() && !self.members.contains_key(&id) => {
                Hint::Nothing(format!("group {id} is not a mapped group"))
            }
            other => other,
        }
    }

    fn work(
        &mut self,
        why: Why,
        scope: Option<Scope>,
        messages: Vec<Message>,
        events: Vec<Seen>,
    ) -> Work {
        let heartbeat = match (&self.queue, messages.is_empty()) {
            (Some(q), false) => {
                let (q, m, v) = (q.clone(), messages.clone(), self.visibility);
                Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(v / 3).await;
                        if let Err(e) = q.extend(&m, v).await {
                            tracing::warn!(error = %e, "extending the events' visibility failed");
                        }
                    }
                }))
            }
            _ => None,
        };
        Work {
            why,
            scope,
            events,
            ignored: Vec::new(),
            messages,
            heartbeat,
        }
    }

    /// After a reconcile (`done`: its report, if it returned): on success its events are
    /// deleted (their agents' checkpoints are durable) and what it read is kept (the
    /// identity store, the mapped groups' members); on failure they are left to come back.
    /// The ids of events whose deletion failed (they come back, and change nothing then).
    pub async fn done(&mut self, mut work: Work, done: Option<&ApplyReport>) -> Vec<String> {
        if let Some(h) = work.heartbeat.take() {
            h.abort();
        }
        let ok = done.is_some();
        if let Some(r) = done {
            self.store_id = Some(r.saved.target.identity_store_id.clone());
            if r.connect_usernames.is_some() {
                self.connect_usernames = r.connect_usernames.clone();
            }
            match &r.group_members_of {
                None => self.members = r.group_members.clone(),
                // Only these users were read: their memberships change, nobody else's.
                Some(users) => {
                    for (group, members) in &mut self.members {
                        members.retain(|u| !users.contains(u));
                        members.extend(r.group_members.get(group).into_iter().flatten().cloned());
                    }
                }
            }
        }
        if work.scope.is_none() {
            // A failed full reconcile is tried again at the next interval.
            self.full_due = false;
            self.next_full = Instant::now() + self.opts.interval;
        }
        if !ok || work.messages.is_empty() {
            return Vec::new();
        }
        let Some(queue) = &self.queue else {
            return Vec::new();
        };
        match queue.delete(&work.messages).await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::warn!(error = %e, "deleting handled events failed: they come back");
                work.messages.iter().map(|m| m.id.clone()).collect()
            }
        }
    }

    /// Gives up the lead (a clean exit), so that a standby takes over at once.
    pub async fn resign(&mut self) {
        self.leader.resign().await;
    }
}

/// A queue that cannot be read (no such queue, no access): an input error, exit 2.
fn queue_error(opts: &WatchOptions, e: &crate::aws::AwsError) -> Error {
    Error::Input(format!(
        "--queue {}: receiving from the queue failed: {e} (is the URL the one SQS shows for the queue, in its region, and may this identity call sqs:ReceiveMessage on it? see `connect-onboard iam-policy --for sync --queue URL`)",
        opts.queue.as_deref().unwrap_or_default()
    ))
}

/// Returns once `stop` is set.
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sleeps until `at`, or until `stop` is set.
async fn sleep_until(at: Instant, stop: &AtomicBool) {
    tokio::select! {
        _ = tokio::time::sleep_until(at.into()) => {}
        _ = stopped(stop) => {}
    }
}

/// This watcher's lease on [`ROLE`]: taken, then renewed every third of its period by a
/// task of its own (so a long reconcile or long poll never lets it lapse).
struct Leader {
    store: StateStore,
    holder: String,
    ttl: Duration,
    /// Set by the renewal task when the lease was lost (another watcher holds it).
    lost: Arc<AtomicBool>,
    renewal: Option<tokio::task::JoinHandle<()>>,
    /// The last look found another leader (the next one waits a third of a lease first).
    standing_by: bool,
}

impl Leader {
    fn new(store: StateStore, ttl: Duration) -> Leader {
        Leader {
            store,
            holder: crate::store::Holder::role_holder(),
            ttl,
            lost: Arc::new(AtomicBool::new(false)),
            renewal: None,
            standing_by: false,
        }
    }

    /// `None` while this watcher leads (taking the lease if it is free); else who leads. A
    /// look after one that found another leader waits a third of a lease period first (or
    /// until `stop`).
    async fn standby(&mut self, stop: &AtomicBool) -> Result<Option<(String, String)>, Error> {
        if self.renewal.is_some() && !self.lost.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
        if self.standing_by {
            sleep_until(Instant::now() + self.ttl / 3, stop).await;
        }
        let l = loop {
            match self.store.lead(ROLE, &self.holder, self.ttl).await {
                Ok(l) => break l,
                // The store does not answer: nobody is known to lead; ask again (or stop).
                Err(e) => {
                    tracing::warn!(error = %e, "the state store did not answer whether this watch leads");
                    sleep_until(Instant::now() + self.ttl / 3, stop).await;
                    if stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                }
            }
        };
        match &l {
            crate::store::Leadership::Lead { .. } => {
                self.standing_by = false;
                self.lost.store(false, Ordering::SeqCst);
                self.renewal = Some(self.renew());
                Ok(None)
            }
            crate::store::Leadership::Standby { holder, .. } => {
                self.standing_by = true;
                Ok(Some((shown_holder(holder), l.until())))
            }
        }
    }

    /// The renewal task.
    fn renew(&self) -> tokio::task::JoinHandle<()> {
        let (store, holder, ttl, lost) = (
            self.store.clone(),
            self.holder.clone(),
            self.ttl,
            self.lost.clone(),
        );
        tokio::spawn(async move {
            let mut until = Instant::now() + ttl;
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.lead(ROLE, &holder, ttl).await {
                    Ok(crate::store::Leadership::Lead { .. }) => until = Instant::now() + ttl,
                    Ok(crate::store::Leadership::Standby { .. }) => {
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Unreachable store: try again; once the lease may have lapsed, another
                    // watch may lead: this one stops leading.
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the watch lease failed");
                        if Instant::now() >= until {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        })
    }

    async fn resign(&mut self) {
        if let Some(r) = self.renewal.take() {
            r.abort();
            if let Err(e) = self.store.resign(ROLE, &self.holder).await {
                tracing::warn!(error = %e, "giving up the watch lease failed: a standby takes over when it lapses");
            }
        }
    }
}

/// A holder as shown: `host pid N` for this tool's holders, else the string.
fn shown_holder(holder: &str) -> String {
    match serde_json::from_str::<crate::store::Holder>(holder) {
        Ok(h) => format!("{} pid {}", h.host, h.pid),
        Err(_) => holder.to_string(),
    }
}
