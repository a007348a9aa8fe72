//! Prometheus metrics (`/metrics`), `/healthz` and `/readyz`.

use super::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub logins: Family<ResultLabels, Counter>,
    pub sessions_revoked: Counter,
    pub hash_seconds: Histogram,
    pub decode_failures: Family<CauseLabels, Counter>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    audit_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("djauth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests by route pattern, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Request latency by route pattern",
            latency.clone(),
        );
        let logins = Family::<ResultLabels, Counter>::default();
        registry.register(
            "logins",
            "Login attempts by result (ok, failed, locked)",
            logins.clone(),
        );
        let sessions_revoked = Counter::default();
        registry.register(
            "sessions_revoked",
            "Sessions ended by revocations (logout-user, APIs, password changes)",
            sessions_revoked.clone(),
        );
        let hash_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "password_check_seconds",
            "Time to check a password (the hasher's work factor)",
            hash_seconds.clone(),
        );
        let decode_failures = Family::<CauseLabels, Counter>::default();
        registry.register(
            "session_decode_failures",
            "Session cookies or rows that did not decode, by cause",
            decode_failures.clone(),
        );
        let pool_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_connections.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        let audit_dropped = Gauge::default();
        registry.register(
            "audit_events_dropped",
            "Audit events a full queue or a failing sink could not take",
            audit_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            logins,
            sessions_revoked,
            hash_seconds,
            decode_failures,
            pool_connections,
            pool_idle,
            audit_dropped,
        }
    }
}

impl Metrics {
    pub fn login(&self, result: &'static str) {
        self.logins.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn decode_failure(&self, cause: &'static str) {
        self.decode_failures
            .get_or_create(&CauseLabels { cause })
            .inc();
    }
}

/// Records every request's route, status and latency.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "(unmatched)".into());
        let m = &state.metrics;
        m.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method,
                status: res.status().as_u16(),
            })
            .inc();
        m.latency
            .get_or_create(&RouteLabels { route })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let pool = state.pool.state();
    m.pool_connections.set(i64::from(pool.connections));
    m.pool_idle.set(i64::from(pool.idle_connections));
    m.audit_dropped.set(
        state
            .audit
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed) as i64,
    );
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &m.registry).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(out)
}

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

/// Recent sessions sampled by `/readyz`.
const READY_SAMPLE: i64 = 50;

/// `GET /readyz`: the database answers, djauth's migrations are applied, and most recent
/// sessions verify under SECRET_KEY and its fallbacks (a key that differs from the Django
/// site's makes every one of them fail). 200 or 503, with the findings as JSON.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let st = state.clone();
    let report = web::block(move || -> serde_json::Value {
        let mut conn = match st.pool.get() {
            Ok(c) => c,
            Err(e) => return serde_json::json!({"ready": false, "database": e.to_string()}),
        };
        let pending = match crate::db::django::pending_djauth_migrations(&mut conn) {
            Ok(n) => n,
            Err(e) => return serde_json::json!({"ready": false, "database": e.to_string()}),
        };
        let sample = if st.engine == crate::formats::session::Engine::Db {
            st.sessions
                .recent_blobs(&mut conn, READY_SAMPLE, crate::db::now_utc())
                .ok()
        } else {
            None
        };
        let (verified, sampled) = sample.map_or((0, 0), |blobs| {
            let ok = blobs
                .iter()
                .filter(|b| st.codec.decode_db(b).is_ok())
                .count();
            (ok, blobs.len())
        });
        // Half is lenient on purpose: sessions signed with a key since dropped from
        // SECRET_KEY_FALLBACKS fail legitimately; a wrong key fails them all.
        let keys_ok = sampled == 0 || verified * 2 >= sampled;
        serde_json::json!({
            "ready": pending == 0 && keys_ok,
            "database": "ok",
            "pending_migrations": pending,
            "sessions_sampled": sampled,
            "sessions_verified": verified,
        })
    })
    .await
    .unwrap_or_else(|e| serde_json::json!({"ready": false, "database": e.to_string()}));
    let ready = report["ready"].as_bool().unwrap_or(false);
    let mut resp = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    if !ready {
        resp.insert_header((actix_web::http::header::RETRY_AFTER, "5"));
    }
    resp.json(report)
}
