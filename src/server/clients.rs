//! The registry of connected clients (CLIENT LIST/INFO/KILL, INFO clients) and server-wide
//! counters (INFO stats).
//!
//! Each connection owns one [`ClientHandle`] and updates it as it runs; other connections only
//! read it. Guards of the concurrent map are never held across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Notify;

/// What one connection shows of itself to CLIENT LIST and CLIENT INFO.
#[derive(Debug)]
pub struct ClientHandle {
    /// Unique, increasing client id.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address the client connected to.
    pub local_addr: SocketAddr,
    created: Instant,
    last_interaction_ms: AtomicU64,
    resp: AtomicU8,
    name: Mutex<Option<Bytes>>,
    lib_name: Mutex<Option<Bytes>>,
    lib_version: Mutex<Option<Bytes>>,
    last_command: Mutex<String>,
    /// Woken by CLIENT KILL to close the connection.
    pub killed: Notify,
    /// Channels, patterns and shard channels subscribed (`sub=`, `psub=`, `ssub=`).
    subscriptions: [std::sync::atomic::AtomicUsize; 3],
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientHandle {
    /// Records activity now, with the command's full name (e.g. `client|list`).
    pub fn touch(&self, command: &str) {
        let since_created = self.created.elapsed().as_millis() as u64;
        self.last_interaction_ms
            .store(since_created, Ordering::Relaxed);
        let mut last = lock(&self.last_command);
        if *last != command {
            last.clear();
            last.push_str(command);
        }
    }

    /// Sets the RESP version shown as `resp=`.
    pub fn set_resp(&self, version: u8) {
        self.resp.store(version, Ordering::Relaxed);
    }

    /// The connection name, if set.
    pub fn name(&self) -> Option<Bytes> {
        lock(&self.name).clone()
    }

    /// Sets or clears the connection name.
    pub fn set_name(&self, name: Option<Bytes>) {
        *lock(&self.name) = name;
    }

    /// Sets `lib-name` or `lib-ver` from CLIENT SETINFO.
    pub fn set_lib_info(&self, lib_name: Option<Bytes>, lib_version: Option<Bytes>) {
        if let Some(n) = lib_name {
            *lock(&self.lib_name) = Some(n);
        }
        if let Some(v) = lib_version {
            *lock(&self.lib_version) = Some(v);
        }
    }

    /// Records the connection's subscription counts: channels, patterns, shard channels.
    pub fn set_subscriptions(&self, counts: [usize; 3]) {
        for (slot, count) in self.subscriptions.iter().zip(counts) {
            slot.store(count, Ordering::Relaxed);
        }
    }

    /// One line of CLIENT LIST, in Redis's field order (without the newline).
    pub fn info_line(&self) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let age = self.created.elapsed().as_secs();
        let idle_ms = (self.created.elapsed().as_millis() as u64)
            .saturating_sub(self.last_interaction_ms.load(Ordering::Relaxed));
        let [sub, psub, ssub] = [0, 1, 2].map(|i| self.subscriptions[i].load(Ordering::Relaxed));
        let flags = if sub + psub + ssub > 0 { "P" } else { "N" };
        format!(
            "id={} addr={} laddr={} fd=8 name={} age={} idle={} flags={flags} db=0 sub={sub} \
             psub={psub} ssub={ssub} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            text(&lock(&self.name)),
            age,
            idle_ms / 1000,
            lock(&self.last_command),
            self.resp.load(Ordering::Relaxed),
            text(&lock(&self.lib_name)),
            text(&lock(&self.lib_version)),
        )
    }
}

/// Server-wide counters for INFO.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted since start (or CONFIG RESETSTAT).
    pub connections_received: AtomicU64,
    /// Commands processed.
    pub commands_processed: AtomicU64,
    /// Connections refused by `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Error replies sent.
    pub error_replies: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
}

impl Stats {
    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.commands_processed,
            &self.rejected_connections,
            &self.error_replies,
            &self.net_input_bytes,
            &self.net_output_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: DashMap<u64, Arc<ClientHandle>>,
    next_id: AtomicU64,
    connected: AtomicUsize,
}

impl ClientRegistry {
    /// Registers a new connection if fewer than `max` are connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientHandle>> {
        if self.connected.fetch_add(1, Ordering::AcqRel) >= max {
            self.connected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            local_addr,
            created: Instant::now(),
            last_interaction_ms: AtomicU64::new(0),
            resp: AtomicU8::new(2),
            name: Mutex::new(None),
            lib_name: Mutex::new(None),
            lib_version: Mutex::new(None),
            last_command: Mutex::new("NULL".into()),
            killed: Notify::new(),
            subscriptions: Default::default(),
        });
        self.clients.insert(id, handle.clone());
        Some(handle)
    }

    /// Removes a closed connection.
    pub fn unregister(&self, id: u64) {
        if self.clients.remove(&id).is_some() {
            self.connected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Number of connected clients.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// CLIENT LIST lines, by id.
    pub fn list(&self) -> String {
        let mut handles: Vec<Arc<ClientHandle>> =
            self.clients.iter().map(|e| e.value().clone()).collect();
        handles.sort_by_key(|h| h.id);
        let mut out = String::new();
        for handle in handles {
            out.push_str(&handle.info_line());
            out.push('\n');
        }
        out
    }

    /// Closes the clients matching `predicate`; returns how many.
    pub fn kill(&self, predicate: impl Fn(&ClientHandle) -> bool) -> usize {
        let matching: Vec<Arc<ClientHandle>> = self
            .clients
            .iter()
            .filter(|e| predicate(e.value()))
            .map(|e| e.value().clone())
            .collect();
        for handle in &matching {
            handle.killed.notify_one();
        }
        matching.len()
    }
}
