//! Selector parser: hand-written recursive descent over the text, reporting
//! byte offsets so an operator sees exactly where a selector goes wrong.

use super::{
    Clause, Error, HostPattern, HostTerm, ItemPattern, ItemSpec, ItemTerm, Items, MAX_IDS,
    NumRange, Query, QueryOp, RangeStyle, Selector, Word, WordPart, is_bare,
};
use crate::finding::codes;
use crate::jsonpath::JsonPath;

/// Regexes in `~` clauses are compiled with this size limit.
pub(crate) const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Parse a selector.
pub fn parse(text: &str) -> Result<Selector, Error> {
    let mut p = Parser { s: text, i: 0 };
    let selector = p.selector()?;
    check(&selector)?;
    Ok(selector)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

fn syntax(offset: usize, message: impl Into<String>) -> Error {
    Error {
        code: codes::SELECTOR_SYNTAX,
        offset,
        message: message.into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> Error {
        match self.peek() {
            Some(c) => syntax(self.i, format!("unexpected `{c}`; expected {expected}")),
            None => syntax(
                self.i,
                format!("unexpected end of selector; expected {expected}"),
            ),
        }
    }

    fn selector(&mut self) -> Result<Selector, Error> {
        self.skip_ws();
        if self.peek().is_none() {
            return Err(syntax(0, "empty selector"));
        }
        let mut hosts = vec![self.host_term()?];
        loop {
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    hosts.push(self.host_term()?);
                }
                Some('/') => {
                    self.bump();
                    let items = self.items()?;
                    self.skip_ws();
                    if self.peek().is_some() {
                        return Err(self.unexpected("end of selector"));
                    }
                    return Ok(Selector {
                        hosts,
                        items: Some(items),
                    });
                }
                None => return Ok(Selector { hosts, items: None }),
                Some(_) => return Err(self.unexpected("`,`, `/` or end of selector")),
            }
        }
    }

    fn host_term(&mut self) -> Result<HostTerm, Error> {
        self.skip_ws();
        let exclude = self.eat('!');
        self.skip_ws();
        let start = self.i;
        if self.peek() == Some('@') {
            self.bump();
            let query = self.query(true)?;
            return Ok(HostTerm {
                exclude,
                pattern: HostPattern::Query(query),
            });
        }
        let mut parts: Vec<WordPart> = Vec::new();
        let mut text = String::new();
        let mut range: Option<(usize, String, String, u64)> = None; // (prefix len in text, start, end, step)
        let mut glob = false;
        loop {
            match self.peek() {
                Some(c) if is_bare(c) => {
                    text.push(c);
                    self.bump();
                }
                Some(c @ ('*' | '?')) => {
                    glob = true;
                    text.push(c);
                    self.bump();
                }
                Some('[') => {
                    if range.is_some() {
                        return Err(syntax(self.i, "a host name holds at most one range"));
                    }
                    let at = text.len();
                    let (a, b, step) = self.bracket_range()?;
                    range = Some((at, a, b, step));
                }
                Some('{') if self.rest().starts_with("{{") => {
                    if !text.is_empty() {
                        parts.push(WordPart::Text(std::mem::take(&mut text)));
                    }
                    parts.push(WordPart::Placeholder(self.placeholder()?));
                }
                _ => break,
            }
        }
        let has_placeholder = !parts.is_empty();
        if !text.is_empty() {
            parts.push(WordPart::Text(text));
        }
        if parts.is_empty() && range.is_none() {
            return Err(self.unexpected("a host name, glob, range or @query"));
        }
        if has_placeholder && (glob || range.is_some()) {
            return Err(syntax(
                start,
                "a placeholder cannot be combined with a glob or range",
            ));
        }
        if glob && range.is_some() {
            return Err(syntax(start, "a host term is a glob or a range, not both"));
        }
        let word = Word {
            parts,
            quoted: false,
        };
        let pattern = if let Some((at, a, b, step)) = range {
            let whole = word.as_literal().unwrap_or_default();
            HostPattern::Range(make_range(
                start,
                &whole[..at],
                &a,
                &b,
                step,
                &whole[at..],
                RangeStyle::Bracket,
            )?)
        } else if glob {
            HostPattern::Glob(word.as_literal().unwrap_or_default())
        } else {
            HostPattern::Name(word)
        };
        Ok(HostTerm { exclude, pattern })
    }

    /// `[start:end]` or `[start:end:step]`, digits only.
    fn bracket_range(&mut self) -> Result<(String, String, u64), Error> {
        let open = self.i;
        self.bump(); // [
        let a = self.digits("the range start")?;
        if !self.eat(':') {
            return Err(self.unexpected("`:` between range start and end"));
        }
        let b = self.digits("the range end")?;
        let mut step = 1;
        if self.eat(':') {
            let step_at = self.i;
            let s = self.digits("the range step")?;
            step = s
                .parse()
                .map_err(|_| syntax(step_at, "range step is too large"))?;
            if step == 0 {
                return Err(Error {
                    code: codes::SELECTOR_RANGE,
                    offset: step_at,
                    message: "range step must be at least 1".into(),
                });
            }
        }
        if !self.eat(']') {
            return Err(syntax(
                open,
                "unclosed `[`: a range is `[start:end]` or `[start:end:step]`",
            ));
        }
        Ok((a, b, step))
    }

    fn digits(&mut self, what: &str) -> Result<String, Error> {
        self.skip_ws();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if start == self.i {
            return Err(self.unexpected(&format!("digits for {what}")));
        }
        Ok(self.s[start..self.i].to_owned())
    }

    fn placeholder(&mut self) -> Result<JsonPath, Error> {
        let open = self.i;
        let Some(close) = self.rest().find("}}") else {
            return Err(Error {
                code: codes::PLACEHOLDER_SYNTAX,
                offset: open,
                message: "unclosed `{{`".into(),
            });
        };
        let inner = self.rest()[2..close].trim().to_owned();
        self.i += close + 2;
        if inner.is_empty() {
            return Err(Error {
                code: codes::PLACEHOLDER_SYNTAX,
                offset: open,
                message: "empty placeholder".into(),
            });
        }
        JsonPath::parse(&inner).map_err(|message| Error {
            code: codes::PLACEHOLDER_SYNTAX,
            offset: open,
            message,
        })
    }

    fn quoted(&mut self) -> Result<String, Error> {
        let open = self.i;
        self.bump(); // "
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(syntax(open, "unclosed `\"`")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    _ => {
                        return Err(syntax(
                            self.i.saturating_sub(1),
                            "only `\\\"` and `\\\\` are escapes in quoted values",
                        ));
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// A value in a query or an item list: bare, quoted, or with placeholders.
    fn word(&mut self, id_chars: bool, what: &str) -> Result<Word, Error> {
        self.skip_ws();
        if self.peek() == Some('"') {
            let text = self.quoted()?;
            return Ok(Word {
                parts: vec![WordPart::Text(text)],
                quoted: true,
            });
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            match self.peek() {
                Some(c) if is_bare(c) || (id_chars && c == '/') => {
                    text.push(c);
                    self.bump();
                }
                Some('{') if self.rest().starts_with("{{") => {
                    if !text.is_empty() {
                        parts.push(WordPart::Text(std::mem::take(&mut text)));
                    }
                    parts.push(WordPart::Placeholder(self.placeholder()?));
                }
                _ => break,
            }
        }
        if !text.is_empty() {
            parts.push(WordPart::Text(text));
        }
        if parts.is_empty() {
            return Err(self.unexpected(what));
        }
        Ok(Word {
            parts,
            quoted: false,
        })
    }

    fn query(&mut self, host_level: bool) -> Result<Query, Error> {
        let mut clauses = Vec::new();
        loop {
            self.skip_ws();
            let key_at = self.i;
            let key = self.word(false, "a query key")?;
            let Some(key) = key.as_literal() else {
                return Err(syntax(key_at, "a query key cannot hold a placeholder"));
            };
            self.skip_ws();
            let op = match self.peek() {
                Some('=') => QueryOp::Eq,
                Some('~') => QueryOp::Regex,
                Some('!') if self.rest().starts_with("!=") => {
                    self.bump();
                    QueryOp::Ne
                }
                _ => return Err(self.unexpected("`=`, `!=` or `~`")),
            };
            self.bump();
            let value_at = self.i;
            let value = self.word(false, "a query value")?;
            let regex = if op == QueryOp::Regex {
                let Some(pattern) = value.as_literal() else {
                    return Err(syntax(value_at, "a `~` pattern cannot hold a placeholder"));
                };
                Some(
                    regex::RegexBuilder::new(&pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| Error {
                            code: codes::SELECTOR_REGEX,
                            offset: value_at,
                            message: format!(
                                "invalid regex `{pattern}`: {}",
                                crate::jsonpath::one_line(&e.to_string())
                            ),
                        })?,
                )
            } else {
                None
            };
            clauses.push(Clause {
                key,
                op,
                value,
                regex,
            });
            self.skip_ws();
            match self.peek() {
                Some('&') => {
                    self.bump();
                }
                Some(',' | '/') if host_level => break,
                None => break,
                Some(_) => {
                    return Err(self.unexpected(if host_level {
                        "`&`, `,`, `/` or end of selector"
                    } else {
                        "`&` or end of selector"
                    }));
                }
            }
        }
        Ok(Query { clauses })
    }

    fn items(&mut self) -> Result<Items, Error> {
        self.skip_ws();
        let start = self.i;
        while self.peek().is_some_and(is_bare) {
            self.bump();
        }
        if start == self.i {
            return Err(self.unexpected("an item type such as `vm` or `port`"));
        }
        let type_name = self.s[start..self.i].to_owned();
        self.skip_ws();
        match self.bump() {
            Some('?') => Ok(Items {
                type_name,
                spec: ItemSpec::Query(self.query(false)?),
            }),
            Some(':') => {
                let mut terms = vec![self.item_term()?];
                while self.eat(',') {
                    terms.push(self.item_term()?);
                }
                Ok(Items {
                    type_name,
                    spec: ItemSpec::List(terms),
                })
            }
            _ => {
                self.i = start + type_name.len();
                Err(self
                    .unexpected("`:` (an item list) or `?` (an item query) after the item type"))
            }
        }
    }

    fn item_term(&mut self) -> Result<ItemTerm, Error> {
        self.skip_ws();
        let exclude = self.eat('!');
        self.skip_ws();
        let at = self.i;
        let word = self.word(true, "an item id")?;
        let pattern = match word.as_literal() {
            Some(text) if !word.quoted => match split_id_range(&text) {
                Some((prefix, a, b)) => {
                    ItemPattern::Range(make_range(at, prefix, a, b, 1, "", RangeStyle::Dash)?)
                }
                None => ItemPattern::Id(word),
            },
            _ => ItemPattern::Id(word),
        };
        Ok(ItemTerm { exclude, pattern })
    }
}

/// `A1-A24` → ("A", "1", "24"): two ids sharing a non-numeric prefix, both ending in digits.
fn split_id_range(text: &str) -> Option<(&str, &str, &str)> {
    for (dash, _) in text.match_indices('-') {
        let (left, right) = (&text[..dash], &text[dash + 1..]);
        let (lp, ld) = split_digits(left);
        let (rp, rd) = split_digits(right);
        if !ld.is_empty() && !rd.is_empty() && lp == rp {
            return Some((lp, ld, rd));
        }
    }
    None
}

fn split_digits(s: &str) -> (&str, &str) {
    let cut = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    (&s[..cut], &s[cut..])
}

fn make_range(
    offset: usize,
    prefix: &str,
    a: &str,
    b: &str,
    step: u64,
    suffix: &str,
    style: RangeStyle,
) -> Result<NumRange, Error> {
    let too_big = || Error {
        code: codes::SELECTOR_TOO_LARGE,
        offset,
        message: format!("range bound is too large (a selector expands to at most {MAX_IDS} ids)"),
    };
    let start: u64 = a.parse().map_err(|_| too_big())?;
    let end: u64 = b.parse().map_err(|_| too_big())?;
    if start > end {
        return Err(Error {
            code: codes::SELECTOR_RANGE,
            offset,
            message: format!("range start {a} is greater than its end {b}"),
        });
    }
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    let range = NumRange {
        prefix: prefix.to_owned(),
        start,
        end,
        step,
        width,
        suffix: suffix.to_owned(),
        style,
        start_text: a.to_owned(),
        end_text: b.to_owned(),
    };
    if range.len() > MAX_IDS as u64 {
        return Err(Error {
            code: codes::SELECTOR_TOO_LARGE,
            offset,
            message: format!(
                "range has {} members; a selector expands to at most {MAX_IDS} ids",
                range.len()
            ),
        });
    }
    Ok(range)
}

/// Rules that need the whole selector: exclusions need inclusions, and the text-expandable size bound.
fn check(sel: &Selector) -> Result<(), Error> {
    if sel.hosts.iter().all(|h| h.exclude) {
        return Err(Error {
            code: codes::SELECTOR_ONLY_EXCLUSIONS,
            offset: 0,
            message: "the host part holds only exclusions; name what to include first".into(),
        });
    }
    if let Some(Items {
        spec: ItemSpec::List(terms),
        ..
    }) = &sel.items
        && terms.iter().all(|t| t.exclude)
    {
        return Err(Error {
            code: codes::SELECTOR_ONLY_EXCLUSIONS,
            offset: 0,
            message: "the item list holds only exclusions; name what to include first".into(),
        });
    }
    let count = |n: u64, acc: u64| acc.saturating_add(n);
    let hosts = sel
        .hosts
        .iter()
        .filter(|h| !h.exclude)
        .map(|h| match &h.pattern {
            HostPattern::Range(r) => r.len(),
            _ => 1,
        })
        .fold(0, |acc, n| count(n, acc));
    let items = match &sel.items {
        Some(Items {
            spec: ItemSpec::List(terms),
            ..
        }) => terms
            .iter()
            .filter(|t| !t.exclude)
            .map(|t| match &t.pattern {
                ItemPattern::Range(r) => r.len(),
                ItemPattern::Id(_) => 1,
            })
            .fold(0, |acc, n| count(n, acc)),
        _ => 1,
    };
    if hosts.saturating_mul(items) > MAX_IDS as u64 {
        return Err(Error {
            code: codes::SELECTOR_TOO_LARGE,
            offset: 0,
            message: format!(
                "selector expands to {} ids ({hosts} hosts × {items} items); the limit is {MAX_IDS}",
                hosts.saturating_mul(items)
            ),
        });
    }
    Ok(())
}
