//! The recording driver's log, read back as numbers.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One line of the log.
#[derive(Debug, Clone, Deserialize)]
pub struct Effect {
    /// `start`, `end`, `cancelled` or `overlap`.
    pub ev: String,
    pub run: String,
    pub host: String,
    pub verb: String,
    pub key: String,
    pub tag: String,
    pub pid: u32,
    /// Microseconds since the epoch.
    pub t: u64,
}

/// Everything the recording driver logged.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub lines: Vec<Effect>,
}

impl Effects {
    /// Read the log; a missing file is an empty log.
    pub fn load(path: &Path) -> Effects {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("effects log: {e}: {l}")))
            .collect();
        Effects { lines }
    }

    fn of(&self, ev: &str) -> impl Iterator<Item = &Effect> {
        self.lines.iter().filter(move |e| e.ev == ev)
    }

    /// Effects begun.
    pub fn started(&self) -> usize {
        self.of("start").count()
    }

    /// Effects carried through to their end.
    pub fn completed(&self) -> usize {
        self.of("end").count()
    }

    /// Effects that began while another held their host's lock: two
    /// actions at once on one host.
    pub fn overlaps(&self) -> Vec<&Effect> {
        self.of("overlap").collect()
    }

    /// Completed effects per tag (the event's `data.n`).
    pub fn completed_by_tag(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in self.of("end") {
            *m.entry(e.tag.clone()).or_default() += 1;
        }
        m
    }

    /// Tags whose effect completed more than once.
    pub fn duplicate_tags(&self) -> Vec<(String, usize)> {
        self.completed_by_tag()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect()
    }

    /// The most effects in progress at one instant, on one host and in all.
    /// An effect with no end (its adapter was killed) is taken to end at the
    /// first of `cuts` after its start (when the test killed serve), or to
    /// run to the end of the log.
    pub fn peaks(&self, cuts: &[u64]) -> (usize, usize) {
        let mut ends: HashMap<(&str, u32), u64> = HashMap::new();
        for e in self.of("end").chain(self.of("cancelled")) {
            ends.insert((e.run.as_str(), e.pid), e.t);
        }
        let last = self.lines.iter().map(|e| e.t).max().unwrap_or(0);
        let mut points: Vec<(u64, i32, &str)> = Vec::new();
        for s in self.of("start") {
            let end = ends
                .get(&(s.run.as_str(), s.pid))
                .copied()
                .or_else(|| cuts.iter().copied().filter(|c| *c >= s.t).min())
                .unwrap_or(last);
            points.push((s.t, 1, s.host.as_str()));
            points.push((end, -1, s.host.as_str()));
        }
        // Ends before starts at the same instant: back-to-back is not overlap.
        points.sort_by_key(|(t, d, _)| (*t, *d));
        let (mut all, mut peak_all) = (0i32, 0i32);
        let mut per_host: HashMap<&str, i32> = HashMap::new();
        let mut peak_host = 0i32;
        for (_, d, h) in points {
            all += d;
            peak_all = peak_all.max(all);
            let n = per_host.entry(h).or_default();
            *n += d;
            peak_host = peak_host.max(*n);
        }
        (peak_host.max(0) as usize, peak_all.max(0) as usize)
    }
}
