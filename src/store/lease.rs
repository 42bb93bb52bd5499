//! Who holds an agent's lease, and whether that holder is known to be dead (same host, boot
//! and PID namespace, and its pid gone or reused), so a crashed process's lease is taken
//! over at once instead of after its expiry — an agent's lease, or a role lease
//! (`RunStore::lead`) whose holder string is one [`Holder::role_holder`] made.

use serde::{Deserialize, Serialize};

/// Who holds a lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Linux boot id (tells a reboot from a live process with a reused pid).
    pub boot_id: String,
    /// The PID namespace (`/proc/self/ns/pid`): pids only compare within one.
    #[serde(default)]
    pub pid_ns: String,
    /// The process start time in clock ticks since boot (`/proc/PID/stat` field 22): tells
    /// the holder from a later process that reused its pid.
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

/// Field 22 of `/proc/<pid>/stat` (the start time), if the process exists.
pub(super) fn start_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Holder {
    /// The current process.
    pub fn current() -> Holder {
        // Read once per process (every lease taken names it: a batch takes one per agent).
        static CURRENT: std::sync::Mutex<Option<Holder>> = std::sync::Mutex::new(None);
        let mut me = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        match &*me {
            Some(h) if h.pid == std::process::id() => h.clone(),
            _ => me.insert(Holder::read()).clone(),
        }
    }

    /// The current process, read from the system.
    fn read() -> Holder {
        Holder {
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid: std::process::id(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            start_ticks: start_ticks("self"),
        }
    }

    /// A holder string for a role lease (`RunStore::lead`) naming this process: its
    /// [`Holder`] as JSON with a random `token` beside (two holders in one process differ),
    /// so that a store can tell that the process behind a lease is dead and take it over at
    /// once. Any other string works as a holder too; it is then presumed alive until its
    /// lease expires.
    pub fn role_holder() -> String {
        let mut v = serde_json::to_value(Holder::current()).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "token".into(),
                serde_json::Value::String(uuid::Uuid::new_v4().to_string()),
            );
        }
        v.to_string()
    }

    /// True only when the holder is known to be gone: same host, boot and PID namespace,
    /// and no process with its pid, or one that started at another time (a reused pid).
    /// Anything else (another host, container or boot; missing data) is presumed alive
    /// until its lease expires.
    pub(super) fn is_dead(&self) -> bool {
        let me = Holder::current();
        let comparable = self.host == me.host
            && !self.boot_id.is_empty()
            && self.boot_id == me.boot_id
            && !self.pid_ns.is_empty()
            && self.pid_ns == me.pid_ns;
        if !comparable || self.pid == me.pid {
            return false;
        }
        match start_ticks(&self.pid.to_string()) {
            None => true,
            Some(t) => self.start_ticks.is_some_and(|mine| mine != t),
        }
    }
}
