//! The policies the engine evaluates, and the ledger cap kept on an interval.

use anyhow::Result;
use std::time::Duration;
use switchyard_engine::{ActivePolicy, PolicySet};
use switchyard_store::Store;

/// Set the active-version gauge of every policy in `set`, and 0 for those
/// in `before` that left it; the names now active.
pub(super) fn active_versions(
    set: &PolicySet,
    before: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let now: std::collections::BTreeSet<String> = set
        .iter()
        .map(|p| {
            metrics::gauge!(switchyard_spec::metric_names::POLICY_ACTIVE_VERSION, "policy" => p.name.clone())
                .set(p.version as f64);
            p.name.clone()
        })
        .collect();
    for gone in before.difference(&now) {
        metrics::gauge!(switchyard_spec::metric_names::POLICY_ACTIVE_VERSION, "policy" => gone.clone())
            .set(0.0);
    }
    now
}

/// The enabled policies, compiled for evaluation.
pub async fn load_policies(store: &Store) -> Result<PolicySet> {
    let mut active = Vec::new();
    for p in store
        .list_policies()
        .await?
        .into_iter()
        .filter(|p| p.enabled)
    {
        match ActivePolicy::new(p.id, &p.name, p.version_int, p.ir) {
            Ok(a) => active.push(a),
            Err(e) => {
                tracing::error!(policy = %p.name, error = %e, "stored policy does not compile; left out")
            }
        }
    }
    Ok(PolicySet::new(active))
}

pub(super) async fn prune_loop(
    store: Store,
    max_per_policy: usize,
    max_age: Duration,
    inbox_max_age: Duration,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match store
            .prune_ledger(switchyard_engine::clock::now(), max_per_policy, max_age)
            .await
        {
            Ok(r) if r.decisions > 0 => {
                tracing::info!(decisions = r.decisions, runs = r.runs, "ledger pruned")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the ledger failed"),
        }
        if let Err(e) = store.prune_claims(switchyard_engine::clock::now()).await {
            tracing::warn!(error = %e, "pruning expired windows failed");
        }
        let before = switchyard_engine::clock::now()
            - chrono::Duration::from_std(inbox_max_age).unwrap_or(chrono::Duration::MAX);
        match store.prune_inbox(before).await {
            Ok(n) if n > 0 => tracing::info!(deliveries = n, "inbox pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the inbox failed"),
        }
    }
}
