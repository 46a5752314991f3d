//! The enabled policies, indexed by trigger kind so an event reaches only the
//! policies that could match it — never a scan of all policies.

use std::collections::HashMap;
use std::sync::Arc;
use switchyard_spec::ir::{PolicyIr, TriggerIr};
use switchyard_spec::jsonpath::JsonPath;
use switchyard_spec::placeholder::Params;
use switchyard_spec::runtime::PolicyRuntime;
use switchyard_spec::selector::{self, Selector};
use uuid::Uuid;

/// One enabled policy, ready to evaluate.
#[derive(Debug)]
pub struct ActivePolicy {
    pub id: Uuid,
    pub name: String,
    pub version: i64,
    pub ir: PolicyIr,
    pub runtime: PolicyRuntime,
    /// Parsed selectors, one per `ir.targets` entry.
    pub selectors: Vec<Selector>,
    /// `windows.group_by` paths.
    pub group_by: Vec<JsonPath>,
    /// Parsed params, one per `ir.actions` entry.
    pub params: Vec<Params>,
}

impl ActivePolicy {
    /// Compile a stored policy's IR; fails only on an IR the compiler would not have produced.
    pub fn new(id: Uuid, name: &str, version: i64, ir: PolicyIr) -> Result<ActivePolicy, String> {
        let runtime = PolicyRuntime::from_ir(&ir)?;
        let selectors = ir
            .targets
            .iter()
            .map(|t| selector::parse(&t.selector).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let group_by = ir
            .windows
            .group_by
            .iter()
            .map(|p| JsonPath::parse(p))
            .collect::<Result<_, _>>()?;
        let params = ir.actions.iter().map(|a| Params::new(&a.params)).collect();
        Ok(ActivePolicy {
            id,
            name: name.to_owned(),
            version,
            ir,
            runtime,
            selectors,
            group_by,
            params,
        })
    }

    fn order_key(&self) -> (i64, Uuid) {
        (self.ir.priority, self.id)
    }
}

/// A token trie over NATS-style kind patterns (`*` one token, `>` the rest).
#[derive(Debug, Default)]
struct Node {
    exact: HashMap<String, Node>,
    star: Option<Box<Node>>,
    /// Policies whose pattern ends here.
    here: Vec<usize>,
    /// Policies whose pattern ends with `>` here.
    rest: Vec<usize>,
}

impl Node {
    fn insert(&mut self, pattern: &str, policy: usize) {
        let mut node = self;
        for token in pattern.split('.') {
            match token {
                ">" => {
                    node.rest.push(policy);
                    return;
                }
                "*" => node = node.star.get_or_insert_with(Box::default),
                t => node = node.exact.entry(t.to_owned()).or_default(),
            }
        }
        node.here.push(policy);
    }

    fn collect(&self, tokens: &[&str], out: &mut Vec<usize>) {
        let Some((first, rest)) = tokens.split_first() else {
            out.extend_from_slice(&self.here);
            return;
        };
        out.extend_from_slice(&self.rest);
        if let Some(n) = self.exact.get(*first) {
            n.collect(rest, out);
        }
        if let Some(n) = &self.star {
            n.collect(rest, out);
        }
    }
}

/// The enabled policies and their trigger index.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Arc<ActivePolicy>>,
    index: Node,
    by_id: HashMap<Uuid, usize>,
}

impl PolicySet {
    /// Index these policies (disabled ones are the caller's to leave out).
    pub fn new(mut policies: Vec<ActivePolicy>) -> PolicySet {
        policies.sort_by_key(ActivePolicy::order_key);
        let mut index = Node::default();
        for (i, p) in policies.iter().enumerate() {
            for t in &p.ir.trigger_group.triggers {
                if let TriggerIr::Kind { kind, .. } = t {
                    index.insert(kind, i);
                }
            }
        }
        let by_id = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        PolicySet {
            policies: policies.into_iter().map(Arc::new).collect(),
            index,
            by_id,
        }
    }

    /// Policies with a trigger whose kind pattern matches `kind`, by priority
    /// then id (each once).
    pub fn shortlist(&self, kind: &str) -> Vec<&Arc<ActivePolicy>> {
        let tokens: Vec<&str> = kind.split('.').collect();
        let mut hits = Vec::new();
        self.index.collect(&tokens, &mut hits);
        // Positions follow (priority, id) order already.
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().map(|i| &self.policies[i]).collect()
    }

    /// A policy by id.
    pub fn get(&self, id: Uuid) -> Option<&Arc<ActivePolicy>> {
        self.by_id.get(&id).map(|i| &self.policies[*i])
    }

    /// Every enabled policy, in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ActivePolicy>> {
        self.policies.iter()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_spec::runtime::kind_matches;

    fn policy(n: u128, priority: i64, kinds: &[&str]) -> ActivePolicy {
        let triggers: Vec<serde_json::Value> = kinds
            .iter()
            .map(|k| serde_json::json!({"kind": k}))
            .collect();
        let doc = serde_json::json!({
            "version": 1, "name": format!("p{n}"), "priority": priority,
            "trigger_group": {"triggers": triggers},
            "targets": [{"selector": "h1"}],
            "actions": [{"capability": "command.run", "verb": "run", "params": {"argv": ["true"]}}]
        });
        let c = switchyard_spec::policy::validate_value(&doc, None);
        let ir = c.ir.expect("compiles");
        ActivePolicy::new(Uuid::from_u128(n), &format!("p{n}"), 1, ir).unwrap()
    }

    #[test]
    fn the_index_agrees_with_pattern_matching() {
        let patterns = [
            "ups.on_battery",
            "ups.*",
            "ups.>",
            ">",
            "*",
            "*.on_battery",
            "host.*.down",
            "host.>",
        ];
        let set = PolicySet::new(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| policy(i as u128 + 1, 100, &[p]))
                .collect(),
        );
        for kind in [
            "ups.on_battery",
            "ups",
            "ups.on_battery.x",
            "host.a.down",
            "host.a.up",
            "x.on_battery",
            "a.b.c.d",
        ] {
            let got: Vec<String> = set.shortlist(kind).iter().map(|p| p.name.clone()).collect();
            let mut want: Vec<String> = patterns
                .iter()
                .enumerate()
                .filter(|(_, p)| kind_matches(p, kind))
                .map(|(i, _)| format!("p{}", i + 1))
                .collect();
            want.sort();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            assert_eq!(got_sorted, want, "{kind}");
        }
    }

    #[test]
    fn shortlist_orders_by_priority_then_id_once_each() {
        let set = PolicySet::new(vec![
            policy(3, 50, &["a.b", "a.*"]),
            policy(1, 100, &["a.b"]),
            policy(2, 50, &["a.>"]),
        ]);
        let got: Vec<u128> = set
            .shortlist("a.b")
            .iter()
            .map(|p| p.id.as_u128())
            .collect();
        assert_eq!(got, [2, 3, 1]);
    }
}
