//! Audit events: always a structured `tracing` event (target `djauth::audit`); also a row in
//! the append-only `djauth_audit_log` when `AUDIT_LOG_TABLE` is on, and a JSON POST to
//! `AUDIT_WEBHOOK_URL` when set. Table and webhook are fed through bounded queues drained by
//! their own threads: recording an event never waits for the database or the network, and
//! when a queue is full the event is dropped from that sink (and counted), never the request.

use crate::db::{datetime_to_text, Backend, DbConnection, Pool};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    LoginFailed,
    Logout,
    PasswordChange,
    PasswordResetRequest,
    PasswordResetComplete,
    SessionRevoked,
    Lockout,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::LoginFailed => "login_failed",
            Kind::Logout => "logout",
            Kind::PasswordChange => "password_change",
            Kind::PasswordResetRequest => "password_reset_request",
            Kind::PasswordResetComplete => "password_reset_complete",
            Kind::SessionRevoked => "session_revoked",
            Kind::Lockout => "lockout",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub at: chrono::DateTime<chrono::Utc>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub ip: Option<String>,
    /// Event-specific facts (how many sessions ended, by whom, …).
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(kind: Kind) -> Event {
        Event {
            kind,
            at: chrono::Utc::now(),
            user_id: None,
            username: None,
            ip: None,
            detail: serde_json::json!({}),
        }
    }

    pub fn user(mut self, id: &str, username: &str) -> Event {
        self.user_id = Some(id.to_owned());
        self.username = Some(username.to_owned());
        self
    }

    pub fn username(mut self, username: &str) -> Event {
        self.username = Some(username.chars().take(255).collect());
        self
    }

    pub fn ip(mut self, ip: Option<&str>) -> Event {
        self.ip = ip.map(str::to_owned);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Event {
        self.detail = detail;
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": self.kind.name(),
            "at": self.at.to_rfc3339(),
            "user_id": self.user_id,
            "username": self.username,
            "ip": self.ip,
            "detail": self.detail,
        })
    }
}

/// Where events go. Cheap to clone and share.
#[derive(Clone, Default)]
pub struct Audit {
    table: Option<SyncSender<Event>>,
    webhook: Option<SyncSender<String>>,
    /// Events a full queue (or a sink that gave up) could not take.
    pub dropped: Arc<AtomicU64>,
}

/// Events waiting for the table or the webhook before new ones are dropped.
const QUEUE: usize = 1024;
const WEBHOOK_TRIES: u32 = 4;

impl Audit {
    /// The sinks the settings ask for; the table writer uses `pool`.
    pub fn start(settings: &crate::config::Settings, pool: Option<(Pool, Backend)>) -> Audit {
        let dropped = Arc::new(AtomicU64::new(0));
        let table = match (settings.audit_log_table, pool) {
            (true, Some((pool, backend))) => {
                let (tx, rx) = sync_channel::<Event>(QUEUE);
                let dropped = dropped.clone();
                std::thread::Builder::new()
                    .name("djauth-audit-table".into())
                    .spawn(move || write_table(rx, pool, backend, dropped))
                    .ok()
                    .map(|_| tx)
            }
            _ => None,
        };
        let webhook = settings.audit_webhook_url.clone().and_then(|url| {
            let (tx, rx) = sync_channel::<String>(QUEUE);
            let dropped = dropped.clone();
            std::thread::Builder::new()
                .name("djauth-audit-webhook".into())
                .spawn(move || post_webhook(rx, &url, dropped))
                .ok()
                .map(|_| tx)
        });
        Audit {
            table,
            webhook,
            dropped,
        }
    }

    pub fn record(&self, event: Event) {
        tracing::info!(
            target: "djauth::audit",
            event = event.kind.name(),
            user_id = event.user_id.as_deref(),
            username = event.username.as_deref(),
            ip = event.ip.as_deref(),
            detail = %event.detail,
        );
        if let Some(tx) = &self.webhook {
            self.offer(tx, event.to_json().to_string());
        }
        if let Some(tx) = &self.table {
            self.offer(tx, event);
        }
    }

    fn offer<T>(&self, tx: &SyncSender<T>, item: T) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(item) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "djauth::audit", "audit queue full: event dropped from a sink");
        }
    }

    /// Waits (up to `limit`) for queued events to be written: for short-lived processes
    /// such as the CLI.
    pub fn flush(self, limit: Duration) {
        let Audit { table, webhook, .. } = self;
        drop((table, webhook));
        // The writer threads exit when their queue is closed and drained; give them time.
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline && WRITERS.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Writer threads still draining (for [`Audit::flush`]).
static WRITERS: AtomicU64 = AtomicU64::new(0);

struct Running;
impl Running {
    fn start() -> Running {
        WRITERS.fetch_add(1, Ordering::SeqCst);
        Running
    }
}
impl Drop for Running {
    fn drop(&mut self) {
        WRITERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes one event to the table now, on the caller's connection (for the CLI).
pub fn write_now(conn: &mut DbConnection, backend: Backend, event: &Event) -> QueryResult<usize> {
    insert(conn, &insert_sql(backend), backend, event)
}

fn insert_sql(backend: Backend) -> String {
    let d = crate::db::Dialect(backend);
    format!(
        "INSERT INTO djauth_audit_log (at, event, user_id, username, ip, detail) \
         VALUES ({}, {}, {}, {}, {}, {})",
        d.text_as_datetime(1),
        d.param(2),
        d.param(3),
        d.param(4),
        d.param(5),
        d.param(6)
    )
}

fn insert(conn: &mut DbConnection, sql: &str, backend: Backend, e: &Event) -> QueryResult<usize> {
    diesel::sql_query(sql)
        .bind::<Text, _>(datetime_to_text(backend, e.at.naive_utc()))
        .bind::<Text, _>(e.kind.name())
        .bind::<Nullable<Text>, _>(e.user_id.as_deref())
        .bind::<Nullable<Text>, _>(e.username.as_deref())
        .bind::<Nullable<Text>, _>(e.ip.as_deref())
        .bind::<Text, _>(e.detail.to_string())
        .execute(conn)
}

fn write_table(rx: Receiver<Event>, pool: Pool, backend: Backend, dropped: Arc<AtomicU64>) {
    let _running = Running::start();
    let sql = insert_sql(backend);
    for event in rx {
        // A database outage costs the events of the outage, not the requests that made them.
        let mut written = false;
        for attempt in 0..3 {
            let ok = pool
                .get()
                .ok()
                .is_some_and(|mut conn| insert(&mut conn, &sql, backend, &event).is_ok());
            if ok {
                written = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        if !written {
            dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "djauth::audit", event = event.kind.name(), "audit row not written");
        }
    }
}

fn post_webhook(rx: Receiver<String>, url: &str, dropped: Arc<AtomicU64>) {
    let _running = Running::start();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    for body in rx {
        let mut sent = false;
        for attempt in 0..WEBHOOK_TRIES {
            match agent
                .post(url)
                .set("Content-Type", "application/json")
                .send_string(&body)
            {
                Ok(_) => {
                    sent = true;
                    break;
                }
                // 4xx other than 429: the receiver refuses this event; retrying won't help.
                Err(ureq::Error::Status(code, _)) if (400..500).contains(&code) && code != 429 => {
                    break
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250 << attempt)),
            }
        }
        if !sent {
            dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "djauth::audit", "audit webhook gave up on an event");
        }
    }
}
