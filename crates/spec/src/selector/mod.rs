//! The target selector grammar (host first).
//!
//! ```text
//! selector  = hosts [ "/" items ]
//! hosts     = host_term *( "," host_term )
//! host_term = [ "!" ] ( name | glob | range | "@" query )
//! items     = type ":" item_list | type "?" query
//! ```
//!
//! [`parse`] turns text into a [`Selector`] with precise error offsets;
//! `Display` renders the canonical text (the form kept in the IR);
//! [`Selector::expand_text`] expands what the text alone determines and
//! [`Selector::resolve`] matches the rest against an inventory snapshot.

pub(crate) mod expand;
mod parse;
#[cfg(test)]
mod tests;

pub use expand::{Inventory, InventoryHost, InventoryItem, Resolution, ResolveError, TargetRef};
pub use parse::parse;

use crate::jsonpath::JsonPath;
use std::fmt;

/// Most ids one selector may expand to.
pub const MAX_IDS: usize = 10_000;

/// The target type of a selector without items.
pub const HOST_TYPE: &str = "host";

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    pub hosts: Vec<HostTerm>,
    pub items: Option<Items>,
}

/// One comma-separated host term.
#[derive(Debug, Clone)]
pub struct HostTerm {
    pub exclude: bool,
    pub pattern: HostPattern,
}

/// What a host term names.
#[derive(Debug, Clone)]
pub enum HostPattern {
    /// A literal name (possibly with placeholders).
    Name(Word),
    /// A name with `*` and `?`.
    Glob(String),
    /// `prefix[start:end:step]suffix`.
    Range(NumRange),
    /// `@key=value&...` over inventory hosts.
    Query(Query),
}

/// The items part after `/`.
#[derive(Debug, Clone)]
pub struct Items {
    pub type_name: String,
    pub spec: ItemSpec,
}

/// An item list or an item query.
#[derive(Debug, Clone)]
pub enum ItemSpec {
    List(Vec<ItemTerm>),
    Query(Query),
}

/// One comma-separated item term.
#[derive(Debug, Clone)]
pub struct ItemTerm {
    pub exclude: bool,
    pub pattern: ItemPattern,
}

/// A listed id or an id range.
#[derive(Debug, Clone)]
pub enum ItemPattern {
    Id(Word),
    Range(NumRange),
}

/// A numeric range with a fixed prefix and suffix; zero padding is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumRange {
    pub prefix: String,
    pub start: u64,
    pub end: u64,
    pub step: u64,
    /// Zero-padded width, or 0 for no padding.
    pub width: usize,
    pub suffix: String,
    /// Host ranges render as `p[a:b]s`, id ranges as `pa-pb`.
    pub style: RangeStyle,
    /// The digits as written, for rendering.
    pub start_text: String,
    pub end_text: String,
}

/// How a range was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeStyle {
    Bracket,
    Dash,
}

impl NumRange {
    /// Number of members.
    pub fn len(&self) -> u64 {
        (self.end - self.start) / self.step + 1
    }

    /// Never true: a range has at least one member.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The members, in order.
    pub fn members(&self) -> impl Iterator<Item = String> + '_ {
        (self.start..=self.end)
            .step_by(usize::try_from(self.step).unwrap_or(usize::MAX))
            .map(move |n| {
                format!(
                    "{}{:0width$}{}",
                    self.prefix,
                    n,
                    self.suffix,
                    width = self.width
                )
            })
    }
}

/// Literal text, possibly holding `{{ JSONPath }}` placeholders.
#[derive(Debug, Clone)]
pub struct Word {
    pub parts: Vec<WordPart>,
    /// Written in double quotes.
    pub quoted: bool,
}

/// A piece of a [`Word`].
#[derive(Debug, Clone)]
pub enum WordPart {
    Text(String),
    Placeholder(JsonPath),
}

impl Word {
    /// A literal word.
    pub fn text(s: impl Into<String>) -> Word {
        Word {
            parts: vec![WordPart::Text(s.into())],
            quoted: false,
        }
    }

    /// The text when the word holds no placeholder.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                WordPart::Text(t) => out.push_str(t),
                WordPart::Placeholder(_) => return None,
            }
        }
        Some(out)
    }

    /// True when the word holds a placeholder.
    pub fn has_placeholder(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, WordPart::Placeholder(_)))
    }
}

/// `key op value` clauses joined by `&`.
#[derive(Debug, Clone)]
pub struct Query {
    pub clauses: Vec<Clause>,
}

/// One query clause.
#[derive(Debug, Clone)]
pub struct Clause {
    pub key: String,
    pub op: QueryOp,
    pub value: Word,
    /// Compiled when `op` is `~`.
    pub regex: Option<regex::Regex>,
}

/// A query comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOp {
    Eq,
    Ne,
    Regex,
}

/// A selector error: what is wrong, where (byte offset), and its finding code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: &'static str,
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for Error {}

pub(crate) fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn write_value(f: &mut fmt::Formatter<'_>, word: &Word, id_chars: bool) -> fmt::Result {
    for part in &word.parts {
        match part {
            WordPart::Placeholder(p) => write!(f, "{{{{ {} }}}}", p.as_str())?,
            WordPart::Text(t) => {
                let bare = !t.is_empty() && t.chars().all(|c| is_bare(c) || (id_chars && c == '/'));
                if bare && !word.quoted {
                    f.write_str(t)?;
                } else {
                    f.write_str("\"")?;
                    for c in t.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write_value(f, &Word::text(c.key.clone()), false)?;
            f.write_str(match c.op {
                QueryOp::Eq => "=",
                QueryOp::Ne => "!=",
                QueryOp::Regex => "~",
            })?;
            write_value(f, &c.value, false)?;
        }
        Ok(())
    }
}

impl fmt::Display for NumRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.style {
            RangeStyle::Bracket => {
                write!(f, "{}[{}:{}", self.prefix, self.start_text, self.end_text)?;
                if self.step != 1 {
                    write!(f, ":{}", self.step)?;
                }
                write!(f, "]{}", self.suffix)
            }
            RangeStyle::Dash => write!(
                f,
                "{}{}-{}{}",
                self.prefix, self.start_text, self.prefix, self.end_text
            ),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, h) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if h.exclude {
                f.write_str("!")?;
            }
            match &h.pattern {
                HostPattern::Name(w) => write_value(f, w, false)?,
                HostPattern::Glob(g) => f.write_str(g)?,
                HostPattern::Range(r) => write!(f, "{r}")?,
                HostPattern::Query(q) => write!(f, "@{q}")?,
            }
        }
        if let Some(items) = &self.items {
            write!(f, "/{}", items.type_name)?;
            match &items.spec {
                ItemSpec::Query(q) => write!(f, "?{q}")?,
                ItemSpec::List(terms) => {
                    f.write_str(":")?;
                    for (i, t) in terms.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        if t.exclude {
                            f.write_str("!")?;
                        }
                        match &t.pattern {
                            ItemPattern::Id(w) => write_value(f, w, true)?,
                            ItemPattern::Range(r) => write!(f, "{r}")?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
