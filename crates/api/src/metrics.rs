//! `GET /metrics`: Prometheus text. Counters and histograms are recorded
//! where things happen (intake, engine, supervisor, API); gauges that
//! describe the present — queues, runs in flight, circuit breakers, policies
//! and their versions — are read at scrape time. Names: `switchyard_spec::metric_names`.

use crate::{ApiError, AppState, Role, auth};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use switchyard_engine::gates::BreakerState;
use switchyard_spec::metric_names as m;

/// The process-wide recorder's handle, installed on first use. `None` when
/// another recorder was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ];
            let durations = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(m::DECISION_LATENCY.into()),
                    &latency,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(m::RUN_DURATION.into()),
                        &durations,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            m::POLICY_RELOAD_DURATION.into(),
                        ),
                        &latency,
                    )
                })
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(r) => {
                    let handle = r.handle();
                    metrics::set_global_recorder(r)
                        .map(|()| handle)
                        .map_err(|e| tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics stays empty"))
                        .ok()
                }
                Err(e) => {
                    tracing::error!(error = %e, "building the metrics recorder failed");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics` (viewer when auth is on: give Prometheus a viewer token).
pub(crate) async fn metrics(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    if let Some(engine) = s.engine.get() {
        let mut in_flight = 0;
        for (host, waiting, running) in engine.queue_depths() {
            metrics::gauge!(m::HOST_QUEUE_DEPTH, "host" => host).set(waiting as f64);
            in_flight += running;
        }
        metrics::gauge!(m::RUNS_IN_FLIGHT).set(in_flight as f64);
        for b in engine.breakers() {
            let state = match b.state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            };
            metrics::gauge!(m::CIRCUIT_STATE, "host" => b.host, "driver" => b.driver).set(state);
        }
    }
    metrics::gauge!(m::DRIVERS_INSTALLED).set(s.fleet.registry().len() as f64);
    let policies = s.store.list_policies().await?;
    let enabled = policies.iter().filter(|p| p.enabled).count();
    metrics::gauge!(m::POLICIES, "state" => "enabled").set(enabled as f64);
    metrics::gauge!(m::POLICIES, "state" => "disabled").set((policies.len() - enabled) as f64);
    for p in &policies {
        metrics::gauge!(m::POLICY_VERSION, "policy" => p.name.clone()).set(p.version_int as f64);
    }
    let body = handle().map_or_else(
        || "# metrics are unavailable: another recorder is installed\n".to_owned(),
        PrometheusHandle::render,
    );
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
