//! The store's policy operations, one suite run against SQLite and against a
//! real PostgreSQL 15 cluster.

use switchyard_spec::policy::{self, Format};
use switchyard_store::{Error, NewPolicy, PolicyRef, Store};

fn doc(name: &str, suppression: &str, enabled: bool, priority: i64) -> String {
    format!(
        "version: 1\nname: {name}\nenabled: {enabled}\npriority: {priority}\n\
         trigger_group: {{triggers: [{{kind: ups.on_battery}}]}}\n\
         targets: [{{selector: \"pve-01/vm:100\"}}]\n\
         actions: [{{capability: vm.power, verb: shutdown}}]\n\
         windows: {{suppression: {suppression}}}\n"
    )
}

fn new_policy(source: &str) -> NewPolicy {
    let c = policy::compile_text(source, Format::Yaml).remove(0);
    assert!(!c.is_blocked(), "{:?}", c.findings);
    NewPolicy {
        ir: c.ir.unwrap(),
        spec_hash: c.spec_hash.unwrap(),
        source: source.to_owned(),
        format: "yaml".into(),
        managed_by: "api".into(),
        author: "admin".into(),
        comment: String::new(),
    }
}

async fn create_and_version_one(store: Store) {
    let p = store
        .create_policy(new_policy(&doc("ups-shutdown", "10m", false, 50)))
        .await
        .unwrap();
    assert_eq!(
        (p.version_int, p.enabled, p.priority, p.name.as_str()),
        (1, false, 50, "ups-shutdown")
    );
    let versions = store.list_versions(&PolicyRef::Id(p.id)).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].checksum.len(), 64);
    assert_eq!(versions[0].spec_hash, p.spec_hash);
    let by_name = store
        .get_policy(&PolicyRef::parse("ups-shutdown"))
        .await
        .unwrap();
    let by_id = store
        .get_policy(&PolicyRef::parse(&p.id.to_string()))
        .await
        .unwrap();
    assert_eq!(by_name, by_id);
    assert_eq!(by_id.ir.windows.suppression_ms, 600_000);
}

async fn duplicates_and_names_are_refused(store: Store) {
    let first = store
        .create_policy(new_policy(&doc("first", "10m", false, 100)))
        .await
        .unwrap();
    // Same behaviour under another name, priority and enabled state: a duplicate.
    match store
        .create_policy(new_policy(&doc("second", "10m", true, 7)))
        .await
    {
        Err(Error::Duplicate { id, name }) => assert_eq!((id, name.as_str()), (first.id, "first")),
        other => panic!("wanted a duplicate, got {other:?}"),
    }
    match store
        .create_policy(new_policy(&doc("first", "20m", false, 100)))
        .await
    {
        Err(Error::NameTaken(n)) => assert_eq!(n, "first"),
        other => panic!("wanted a taken name, got {other:?}"),
    }
    assert_eq!(store.list_policies().await.unwrap().len(), 1);
}

async fn updates_are_versioned_and_guarded(store: Store) {
    let p = store
        .create_policy(new_policy(&doc("p", "10m", false, 100)))
        .await
        .unwrap();
    let r = PolicyRef::Id(p.id);
    match store
        .update_policy(&r, 7, new_policy(&doc("p", "20m", false, 100)))
        .await
    {
        Err(Error::VersionMismatch {
            expected: 7,
            current: 1,
            ..
        }) => {}
        other => panic!("wanted a version mismatch, got {other:?}"),
    }
    let v2 = store
        .update_policy(&r, 1, new_policy(&doc("p", "20m", false, 100)))
        .await
        .unwrap();
    assert_eq!(v2.version_int, 2);
    assert_eq!(v2.ir.windows.suppression_ms, 1_200_000);
    // Changing only `enabled` is no new version.
    let same = store
        .update_policy(&r, 2, new_policy(&doc("p", "20m", true, 100)))
        .await
        .unwrap();
    assert_eq!((same.version_int, same.enabled), (2, true));
    let disabled = store.set_enabled(&r, false).await.unwrap();
    assert_eq!((disabled.version_int, disabled.enabled), (2, false));
    let versions = store.list_versions(&r).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version_int).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        store
            .get_version(&r, 1)
            .await
            .unwrap()
            .ir
            .windows
            .suppression_ms,
        600_000
    );
    assert!(matches!(
        store.get_version(&r, 9).await,
        Err(Error::NoSuchVersion { version: 9, .. })
    ));
}

async fn rollback_makes_a_new_version_with_old_content(store: Store) {
    let p = store
        .create_policy(new_policy(&doc("p", "10m", true, 100)))
        .await
        .unwrap();
    let r = PolicyRef::Name("p".into());
    store
        .update_policy(&r, 1, new_policy(&doc("p", "30m", true, 100)))
        .await
        .unwrap();
    assert!(matches!(
        store.rollback(&r, 1, 1, "op").await,
        Err(Error::VersionMismatch { .. })
    ));
    let back = store.rollback(&r, 1, 2, "op").await.unwrap();
    assert_eq!(back.version_int, 3);
    assert_eq!(back.spec_hash, p.spec_hash);
    assert!(back.enabled, "rollback restores content, not state");
    let v3 = store.get_version(&r, 3).await.unwrap();
    assert_eq!(
        (v3.author.as_str(), v3.comment.as_str()),
        ("op", "rollback to version 1")
    );
}

async fn archived_policies_are_hidden_and_free_their_name(store: Store) {
    let p = store
        .create_policy(new_policy(&doc("old", "10m", true, 100)))
        .await
        .unwrap();
    let archived = store.archive_policy(&PolicyRef::Id(p.id)).await.unwrap();
    assert!(!archived.enabled);
    assert!(store.list_policies().await.unwrap().is_empty());
    assert!(matches!(
        store.get_policy(&PolicyRef::Id(p.id)).await,
        Err(Error::NotFound(_))
    ));
    // Neither its name nor its behaviour blocks a new policy.
    let again = store
        .create_policy(new_policy(&doc("old", "10m", true, 100)))
        .await
        .unwrap();
    assert_ne!(again.id, p.id);
}

async fn migrations_go_down_and_up_again(store: Store) {
    store
        .create_policy(new_policy(&doc("p", "10m", true, 100)))
        .await
        .unwrap();
    store.migrate_down_all().await.unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        8,
        "every migration re-applied"
    );
    assert!(store.list_policies().await.unwrap().is_empty());
    store
        .create_policy(new_policy(&doc("p", "10m", true, 100)))
        .await
        .unwrap();
}

async fn version_history_is_capped(store: Store) {
    let store = store.with_options(switchyard_store::StoreOptions {
        max_versions: Some(3),
    });
    store
        .create_policy(new_policy(&doc("p", "1m", false, 100)))
        .await
        .unwrap();
    let r = PolicyRef::Name("p".into());
    for (v, sup) in [(1, "2m"), (2, "3m"), (3, "4m"), (4, "5m")] {
        store
            .update_policy(&r, v, new_policy(&doc("p", sup, false, 100)))
            .await
            .unwrap();
    }
    let kept: Vec<i64> = store
        .list_versions(&r)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version_int)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert!(matches!(
        store.rollback(&r, 1, 5, "op").await,
        Err(Error::NoSuchVersion { version: 1, .. })
    ));
}

async fn versions_diff_field_by_field(store: Store) {
    let p = store
        .create_policy(new_policy(&doc("diffed", "10m", false, 50)))
        .await
        .unwrap();
    store
        .update_policy(
            &PolicyRef::Id(p.id),
            1,
            new_policy(&doc("diffed", "5m", false, 50)),
        )
        .await
        .unwrap();
    let d = store
        .diff_versions(&PolicyRef::parse("diffed"), 1, 2)
        .await
        .unwrap();
    assert_eq!(d.changes.len(), 1, "{:?}", d.changes);
    assert_eq!(d.changes[0].path, "/windows/suppression_ms");
    assert_eq!(d.changes[0].before, Some(serde_json::json!(600_000)));
    assert_eq!(d.changes[0].after, Some(serde_json::json!(300_000)));
    assert!(d.source_from.contains("10m") && d.source_to.contains("5m"));
    assert!(matches!(
        store.diff_versions(&PolicyRef::Id(p.id), 1, 9).await,
        Err(Error::NoSuchVersion { version: 9, .. })
    ));
    let v = store
        .set_last_validation(
            &PolicyRef::Id(p.id),
            serde_json::json!({"findings": [], "at": "2026-11-24T00:00:00Z"}),
        )
        .await
        .unwrap();
    assert_eq!(
        v.last_validation.unwrap()["findings"],
        serde_json::json!([])
    );
    assert_eq!(v.version_int, 2, "recording a validation makes no version");
}

fn dir_policy(source: &str) -> NewPolicy {
    NewPolicy {
        managed_by: "dir".into(),
        ..new_policy(source)
    }
}

async fn bundles_apply_whole_or_not_at_all(store: Store) {
    use switchyard_store::BundleAction::{Created, Disabled, Unchanged, Updated};
    let actions = |steps: &[switchyard_store::BundleStep]| -> Vec<(String, switchyard_store::BundleAction, i64)> {
        steps.iter().map(|s| (s.policy.name.clone(), s.action, s.policy.version_int)).collect()
    };
    let a = || dir_policy(&doc("a", "10m", true, 1));
    let b = || dir_policy(&doc("b", "20m", true, 2));
    // A dry-run plans exactly and writes nothing.
    let plan = store
        .apply_bundle(vec![a(), b()], "dir", false, true)
        .await
        .unwrap();
    assert_eq!(
        actions(&plan),
        [("a".into(), Created, 1), ("b".into(), Created, 1)]
    );
    assert!(store.list_policies().await.unwrap().is_empty());
    let steps = store
        .apply_bundle(vec![a(), b()], "dir", false, false)
        .await
        .unwrap();
    assert_eq!(
        actions(&steps),
        [("a".into(), Created, 1), ("b".into(), Created, 1)]
    );
    // Edit a, drop b: a gets version 2, b is disabled by prune.
    let a2 = dir_policy(&doc("a", "15m", true, 1));
    let steps = store
        .apply_bundle(vec![a2.clone()], "dir", true, false)
        .await
        .unwrap();
    assert_eq!(
        actions(&steps),
        [("a".into(), Updated, 2), ("b".into(), Disabled, 1)]
    );
    let steps = store
        .apply_bundle(vec![a2.clone()], "dir", true, false)
        .await
        .unwrap();
    assert_eq!(actions(&steps), [("a".into(), Unchanged, 2)]);
    // One bad member (a behaviour another policy has) applies nothing.
    let c = dir_policy(&doc("c", "30m", true, 3));
    let clash = dir_policy(&doc("clash", "30m", true, 3));
    let err = store
        .apply_bundle(vec![a2.clone(), c, clash], "dir", false, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err}");
    assert!(
        store.get_policy(&PolicyRef::parse("c")).await.is_err(),
        "c was rolled back with the bundle"
    );
    // A name another source manages is refused.
    store
        .create_policy(new_policy(&doc("by-api", "40m", false, 4)))
        .await
        .unwrap();
    let err = store
        .apply_bundle(
            vec![dir_policy(&doc("by-api", "41m", false, 4))],
            "dir",
            false,
            false,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ManagedElsewhere { .. }), "{err}");
    assert_eq!(
        store
            .get_policy(&PolicyRef::parse("by-api"))
            .await
            .unwrap()
            .version_int,
        1
    );
}

async fn a_bundle_rolls_back_to_where_every_policy_stood(store: Store) {
    let get = |n: &'static str| {
        let store = store.clone();
        async move { store.get_policy(&PolicyRef::parse(n)).await }
    };
    store
        .apply_bundle(
            vec![
                dir_policy(&doc("a", "10m", true, 1)),
                dir_policy(&doc("b", "20m", false, 2)),
                dir_policy(&doc("gone", "25m", true, 5)),
            ],
            "dir",
            false,
            false,
        )
        .await
        .unwrap();
    // Edit a, enable b, create c, prune `gone`.
    let steps = store
        .apply_bundle(
            vec![
                dir_policy(&doc("a", "15m", true, 1)),
                dir_policy(&doc("b", "20m", true, 2)),
                dir_policy(&doc("c", "30m", true, 3)),
            ],
            "dir",
            true,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        steps.iter().map(|s| s.previous).collect::<Vec<_>>(),
        [
            Some(switchyard_store::Previous {
                version_int: 1,
                enabled: true
            }),
            Some(switchyard_store::Previous {
                version_int: 1,
                enabled: false
            }),
            None,
            Some(switchyard_store::Previous {
                version_int: 1,
                enabled: true
            }),
        ]
    );
    let restored = store
        .rollback_bundle(&steps, "enabling `b` was refused", "dir")
        .await
        .unwrap();
    assert_eq!(
        restored
            .iter()
            .map(|r| (r.action, r.policy.name.as_str()))
            .collect::<Vec<_>>(),
        [
            ("restored", "a"),
            ("redisabled", "b"),
            ("archived", "c"),
            ("reenabled", "gone")
        ]
    );
    let a = get("a").await.unwrap();
    assert_eq!((a.version_int, a.enabled), (3, true));
    assert_eq!(a.source, doc("a", "10m", true, 1), "version 1's content");
    let history = store.list_versions(&PolicyRef::parse("a")).await.unwrap();
    let last = history.iter().max_by_key(|v| v.version_int).unwrap();
    assert_eq!(
        last.comment,
        "automatic rollback to version 1: enabling `b` was refused"
    );
    assert!(!get("b").await.unwrap().enabled);
    assert!(get("c").await.is_err(), "a created policy is archived");
    assert!(get("gone").await.unwrap().enabled);
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    create_and_version_one,
    duplicates_and_names_are_refused,
    updates_are_versioned_and_guarded,
    rollback_makes_a_new_version_with_old_content,
    archived_policies_are_hidden_and_free_their_name,
    migrations_go_down_and_up_again,
    version_history_is_capped,
    versions_diff_field_by_field,
    bundles_apply_whole_or_not_at_all,
    a_bundle_rolls_back_to_where_every_policy_stood,
);
