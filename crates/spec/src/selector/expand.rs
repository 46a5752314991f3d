//! Expansion: what the text alone determines (`resolved_ids` in the IR), and
//! resolution of globs, queries and items against an inventory snapshot.

use super::{
    HOST_TYPE, HostPattern, ItemPattern, ItemSpec, MAX_IDS, Query, QueryOp, Selector, Word,
    WordPart,
};
use crate::placeholder::FillError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

/// One target: an item of a type on a host (type `host` targets the host itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetRef {
    pub host: String,
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
    /// Came from a range: absent from the inventory means dropped, not failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ranged: bool,
}

impl TargetRef {
    /// The host itself as a target (type `host`).
    pub fn on_host(host: String) -> TargetRef {
        TargetRef {
            id: host.clone(),
            host,
            target_type: HOST_TYPE.to_owned(),
            ranged: false,
        }
    }
}

/// A host known to the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryHost {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

/// An item under a host, as a driver's `discover` reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryItem {
    pub host: String,
    pub item_type: String,
    pub id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A read-only inventory snapshot to resolve against.
#[derive(Debug, Clone, Copy)]
pub struct Inventory<'a> {
    pub hosts: &'a [InventoryHost],
    pub items: &'a [InventoryItem],
}

/// What a selector resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Targets to act on.
    pub targets: Vec<TargetRef>,
    /// Listed ids absent from the inventory: each makes a failed run (`target_not_found`).
    pub missing: Vec<TargetRef>,
    /// Members of ranges absent from the inventory: dropped and counted.
    pub dropped: usize,
}

/// Why a selector could not be resolved for an event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolveError {
    #[error(transparent)]
    Placeholder(#[from] FillError),
    #[error("selector resolves to {0} targets; the limit is {MAX_IDS}")]
    TooLarge(usize),
    #[error("placeholder in a selector produced `{0}`, which is not a valid name")]
    BadFilledValue(String),
}

/// Match `text` against a glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn fill_word(word: &Word, event: Option<&Value>) -> Result<String, ResolveError> {
    let mut out = String::new();
    for part in &word.parts {
        match part {
            WordPart::Text(t) => out.push_str(t),
            WordPart::Placeholder(p) => {
                let value = match event {
                    Some(ev) => crate::placeholder::fill_path(p, ev)?,
                    None => {
                        return Err(FillError::NoMatch {
                            path: p.as_str().to_owned(),
                        }
                        .into());
                    }
                };
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(ResolveError::BadFilledValue(value));
                }
                out.push_str(&value);
            }
        }
    }
    Ok(out)
}

fn query_matches(
    query: &Query,
    lookup: &dyn Fn(&str) -> Option<String>,
    event: Option<&Value>,
) -> Result<bool, ResolveError> {
    for clause in &query.clauses {
        let actual = lookup(&clause.key);
        let ok = match clause.op {
            QueryOp::Regex => {
                // Compiled at parse: a regex clause always has one.
                let re = clause.regex.as_ref();
                actual.is_some_and(|a| re.is_some_and(|re| re.is_match(&a)))
            }
            QueryOp::Eq => {
                let want = fill_word(&clause.value, event)?;
                actual.is_some_and(|a| a == want)
            }
            QueryOp::Ne => {
                let want = fill_word(&clause.value, event)?;
                actual.is_none_or(|a| a != want)
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Selector {
    /// True when the text alone determines the targets (no globs or queries
    /// among inclusions, no query exclusions, no item query, no placeholders).
    pub fn is_text_only(&self) -> bool {
        let hosts_ok = self.hosts.iter().all(|h| match &h.pattern {
            HostPattern::Name(w) => !w.has_placeholder(),
            HostPattern::Range(_) => true,
            HostPattern::Glob(_) => h.exclude,
            HostPattern::Query(_) => false,
        });
        let items_ok = match &self.items {
            None => true,
            Some(items) => match &items.spec {
                ItemSpec::Query(_) => false,
                ItemSpec::List(terms) => terms.iter().all(|t| match &t.pattern {
                    ItemPattern::Id(w) => !w.has_placeholder(),
                    ItemPattern::Range(_) => true,
                }),
            },
        };
        hosts_ok && items_ok
    }

    /// True when the selector holds a `{{ }}` placeholder.
    pub fn has_placeholders(&self) -> bool {
        let in_query = |q: &Query| q.clauses.iter().any(|c| c.value.has_placeholder());
        self.hosts.iter().any(|h| match &h.pattern {
            HostPattern::Name(w) => w.has_placeholder(),
            HostPattern::Query(q) => in_query(q),
            _ => false,
        }) || self.items.as_ref().is_some_and(|items| match &items.spec {
            ItemSpec::Query(q) => in_query(q),
            ItemSpec::List(terms) => terms.iter().any(|t| match &t.pattern {
                ItemPattern::Id(w) => w.has_placeholder(),
                ItemPattern::Range(_) => false,
            }),
        })
    }

    /// Expand a text-only selector; `None` when the inventory (or an event) is needed.
    pub fn expand_text(&self) -> Option<Vec<TargetRef>> {
        if !self.is_text_only() {
            return None;
        }
        let no_hosts: [super::InventoryHost; 0] = [];
        let no_items: [super::InventoryItem; 0] = [];
        let inv = Inventory {
            hosts: &no_hosts,
            items: &no_items,
        };
        let hosts = self.host_names(None, &inv).ok()?;
        let Some(items) = &self.items else {
            return Some(hosts.into_iter().map(TargetRef::on_host).collect());
        };
        let ItemSpec::List(terms) = &items.spec else {
            return None;
        };
        let ids = listed_ids(terms, None).ok()?;
        let mut out = Vec::with_capacity(hosts.len() * ids.len());
        for host in &hosts {
            out.extend(ids.iter().map(|(id, ranged)| TargetRef {
                host: host.clone(),
                target_type: items.type_name.clone(),
                id: id.clone(),
                ranged: *ranged,
            }));
        }
        Some(out)
    }

    /// Host names after inclusions and exclusions, in first-seen order.
    fn host_names(
        &self,
        event: Option<&Value>,
        inv: &Inventory<'_>,
    ) -> Result<Vec<String>, ResolveError> {
        let mut names: Vec<String> = Vec::new();
        for term in self.hosts.iter().filter(|h| !h.exclude) {
            let found: Vec<String> = match &term.pattern {
                HostPattern::Name(w) => vec![fill_word(w, event)?],
                HostPattern::Range(r) => r.members().collect(),
                HostPattern::Glob(g) => inv
                    .hosts
                    .iter()
                    .filter(|h| glob_match(g, &h.id))
                    .map(|h| h.id.clone())
                    .collect(),
                HostPattern::Query(q) => {
                    let mut v = Vec::new();
                    for h in inv.hosts {
                        if query_matches(q, &|k: &str| host_field(h, k), event)? {
                            v.push(h.id.clone());
                        }
                    }
                    v
                }
            };
            names.extend(found);
        }
        // First occurrence wins; a single name (the common `{{ $.host }}`) needs no set.
        if names.len() > 1 {
            let mut seen = HashSet::with_capacity(names.len());
            let first: Vec<bool> = names.iter().map(|n| seen.insert(n.as_str())).collect();
            let mut first = first.into_iter();
            names.retain(|_| first.next().unwrap_or(false));
        }
        for term in self.hosts.iter().filter(|h| h.exclude) {
            match &term.pattern {
                HostPattern::Name(w) => {
                    let n = fill_word(w, event)?;
                    names.retain(|x| *x != n);
                }
                HostPattern::Range(r) => {
                    let members: HashSet<String> = r.members().collect();
                    names.retain(|x| !members.contains(x));
                }
                HostPattern::Glob(g) => names.retain(|x| !glob_match(g, x)),
                HostPattern::Query(q) => {
                    let mut drop = HashSet::new();
                    for h in inv.hosts {
                        if query_matches(q, &|k: &str| host_field(h, k), event)? {
                            drop.insert(h.id.clone());
                        }
                    }
                    names.retain(|x| !drop.contains(x));
                }
            }
        }
        Ok(names)
    }

    /// Resolve against an inventory snapshot, filling placeholders from `event`.
    pub fn resolve(
        &self,
        event: Option<&Value>,
        inv: &Inventory<'_>,
    ) -> Result<Resolution, ResolveError> {
        let hosts = self.host_names(event, inv)?;
        let mut res = Resolution::default();
        let Some(items) = &self.items else {
            res.targets = hosts.into_iter().map(TargetRef::on_host).collect();
            return check_size(res);
        };
        enum Pick<'q> {
            Query(&'q Query),
            Ids(Vec<(String, bool)>),
        }
        let pick = match &items.spec {
            ItemSpec::List(terms) => Pick::Ids(listed_ids(terms, event)?),
            ItemSpec::Query(q) => Pick::Query(q),
        };
        for host in &hosts {
            let of_host = || {
                inv.items
                    .iter()
                    .filter(move |i| i.host == *host && i.item_type == items.type_name)
            };
            let target = |id: &str, ranged: bool| TargetRef {
                host: host.clone(),
                target_type: items.type_name.clone(),
                id: id.to_owned(),
                ranged,
            };
            match &pick {
                Pick::Query(q) => {
                    for item in of_host() {
                        let lookup = |key: &str| -> Option<String> {
                            match key {
                                "id" => Some(item.id.clone()),
                                "name" => item.name.clone(),
                                _ => item.labels.get(key).cloned(),
                            }
                        };
                        if query_matches(q, &lookup, event)? {
                            res.targets.push(target(&item.id, false));
                        }
                    }
                }
                Pick::Ids(ids) => {
                    let known: HashSet<&str> = of_host().map(|i| i.id.as_str()).collect();
                    for (id, ranged) in ids {
                        if known.contains(id.as_str()) {
                            res.targets.push(target(id, *ranged));
                        } else if *ranged {
                            res.dropped += 1;
                        } else {
                            res.missing.push(target(id, false));
                        }
                    }
                }
            }
        }
        check_size(res)
    }
}

/// What a host query clause reads: `id`, else a label.
fn host_field(h: &InventoryHost, key: &str) -> Option<String> {
    if key == "id" {
        Some(h.id.clone())
    } else {
        h.labels.get(key).cloned()
    }
}

fn check_size(res: Resolution) -> Result<Resolution, ResolveError> {
    let n = res.targets.len() + res.missing.len();
    if n > MAX_IDS {
        return Err(ResolveError::TooLarge(n));
    }
    Ok(res)
}

/// The ids an item list names, once each, in order, after exclusions;
/// `true` marks members of ranges. Placeholders are filled from `event`.
fn listed_ids(
    terms: &[super::ItemTerm],
    event: Option<&Value>,
) -> Result<Vec<(String, bool)>, ResolveError> {
    let mut excluded = HashSet::new();
    for t in terms.iter().filter(|t| t.exclude) {
        match &t.pattern {
            ItemPattern::Id(w) => {
                excluded.insert(fill_word(w, event)?);
            }
            ItemPattern::Range(r) => excluded.extend(r.members()),
        }
    }
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for t in terms.iter().filter(|t| !t.exclude) {
        let (members, ranged): (Vec<String>, bool) = match &t.pattern {
            ItemPattern::Id(w) => (vec![fill_word(w, event)?], false),
            ItemPattern::Range(r) => (r.members().collect(), true),
        };
        for id in members {
            if !excluded.contains(&id) && seen.insert(id.clone()) {
                ids.push((id, ranged));
            }
        }
    }
    Ok(ids)
}
