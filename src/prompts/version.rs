//! Prompt versions and Poetry-style version constraints (`prompt_version`).
//!
//! Contract: `docs/gitlab-contract.md#named-prompts`: `prompt_version` is a Poetry constraint
//! string, default `^1.0.0`; an unparseable constraint is a 422 `{"detail":"Invalid version
//! constraint"}`, no matching version a 400 `{"detail":"No prompt version found matching the
//! query: <constraint>"}`; a constraint that is not *simple* only matches stable versions.
//!
//! Supported syntax (what `poetry.core.constraints.version.parse_constraint` accepts in
//! practice):
//! * any: `*`, `x`, `X`, `*.*`, `v*`;
//! * exact: `1.0.0`, `=1.0.0`, `==1.0`, `v1.0.0` (missing components are zeros: `1.0 == 1.0.0`);
//! * comparisons: `>=1.0`, `>1`, `<=2`, `<2.0.0`, `!=1.0.1`;
//! * caret `^1.2.3` (<2.0.0), `^0.2.3` (<0.3.0), `^0.0.3` (<0.0.4), `^1` (<2), `^0.0` (<0.1);
//! * tilde `~1.2.3` / `~1.2` (<1.3), `~1` (<2); PEP 440 `~=1.2` (<2.0), `~=1.2.3` (<1.3.0);
//! * wildcards `1.*`, `1.2.*`, `1.x`, `==1.*`, `!=1.2.*`;
//! * conjunctions with `,` or spaces (`>=1.0, <2.0`, `>= 1.0 < 2.0`), disjunctions with `||`/`|`.
//!
//! Versions follow PEP 440 loosely: release numbers, optional pre-release (`a`, `alpha`, `b`,
//! `beta`, `c`, `rc`, `pre`, `preview`), post-release (`post`, `rev`, `r`, `-N`) and dev
//! (`dev`) parts, separated by `.`, `-`, `_` or nothing (`1.0.1-dev`, `1.0.0rc1`), and an
//! ignored local part (`+abc`). Ordering: dev < pre-releases < release < post-releases.
//! *Simple* (Poetry's `is_simple`): a single exact version, a single `!=`, a single one-sided
//! comparison, or `*`; everything else (ranges, carets, tildes, wildcards, unions) only
//! matches stable versions.

use std::cmp::Ordering;

/// A parsed version.
#[derive(Debug, Clone)]
pub struct Version {
    release: Vec<u64>,
    /// (phase: 0 = a, 1 = b, 2 = rc, number).
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
}

impl Version {
    /// Parses a version; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let s = s.split('+').next().unwrap_or("");
        let bytes = s.as_bytes();
        let mut i = 0usize;
        let mut release = Vec::new();
        loop {
            let (n, next) = number(bytes, i)?;
            release.push(n);
            i = next;
            if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
            } else {
                break;
            }
        }
        if release.len() > 16 {
            return None;
        }
        let mut v = Version {
            release,
            pre: None,
            post: None,
            dev: None,
        };
        let mut rest = s.get(i..)?;
        // pre-release
        if let Some((phase, r)) = label(
            rest,
            &[
                ("alpha", 0),
                ("a", 0),
                ("beta", 1),
                ("b", 1),
                ("preview", 2),
                ("pre", 2),
                ("rc", 2),
                ("c", 2),
            ],
        ) {
            let (n, r) = optional_number(r);
            v.pre = Some((phase, n));
            rest = r;
        }
        // post-release: "-N" or label
        if let Some(r) = rest.strip_prefix('-') {
            if let Some((n, next)) = number(r.as_bytes(), 0) {
                v.post = Some(n);
                rest = r.get(next..)?;
            }
        }
        if v.post.is_none() {
            if let Some((_, r)) = label(rest, &[("post", 0), ("rev", 0), ("r", 0)]) {
                let (n, r) = optional_number(r);
                v.post = Some(n);
                rest = r;
            }
        }
        if let Some((_, r)) = label(rest, &[("dev", 0)]) {
            let (n, r) = optional_number(r);
            v.dev = Some(n);
            rest = r;
        }
        if rest.is_empty() {
            Some(v)
        } else {
            None
        }
    }

    /// No pre-release and no dev part.
    pub fn is_stable(&self) -> bool {
        self.pre.is_none() && self.dev.is_none()
    }

    fn from_release(release: Vec<u64>) -> Version {
        Version {
            release,
            pre: None,
            post: None,
            dev: None,
        }
    }

    fn component(&self, i: usize) -> u64 {
        self.release.get(i).copied().unwrap_or(0)
    }

    /// The release truncated to `len` components with the last one incremented.
    fn bump(&self, len: usize) -> Version {
        let len = len.max(1);
        let mut r: Vec<u64> = (0..len).map(|i| self.component(i)).collect();
        if let Some(last) = r.last_mut() {
            *last = last.saturating_add(1);
        }
        Version::from_release(r)
    }

    /// (pre, post, dev) as comparable keys, PEP 440 style.
    fn suffix_key(&self) -> (i128, i128, i128) {
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => i128::MIN,
            (Some((phase, n)), _, _) => i128::from(phase) * (1i128 << 64) + i128::from(n),
            (None, _, _) => i128::MAX,
        };
        let post = self.post.map_or(-1, i128::from);
        let dev = self.dev.map_or(i128::MAX, i128::from);
        (pre, post, dev)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.release.len().max(other.release.len());
        for i in 0..n {
            match self.component(i).cmp(&other.component(i)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.suffix_key().cmp(&other.suffix_key())
    }
}

fn number(bytes: &[u8], start: usize) -> Option<(u64, usize)> {
    let mut i = start;
    let mut n: u64 = 0;
    while let Some(b) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        i += 1;
    }
    (i > start).then_some((n, i))
}

fn optional_number(s: &str) -> (u64, &str) {
    let t = s.strip_prefix(['.', '-', '_']).unwrap_or(s);
    match number(t.as_bytes(), 0) {
        Some((n, i)) => (n, t.get(i..).unwrap_or("")),
        None => (0, s),
    }
}

/// An optional separator followed by one of `labels` (longest listed first).
fn label<'s>(s: &'s str, labels: &[(&str, u8)]) -> Option<(u8, &'s str)> {
    let t = s.strip_prefix(['.', '-', '_']).unwrap_or(s);
    labels
        .iter()
        .find_map(|(l, v)| t.strip_prefix(l).map(|r| (*v, r)))
}

/// One comparison of a constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Any,
    Ge(Version),
    Gt(Version),
    Le(Version),
    Lt(Version),
    Eq(Version),
    Ne(Version),
    /// `[min, max)`.
    Range(Version, Version),
    /// Outside `[min, max)`.
    NotRange(Version, Version),
}

impl Atom {
    fn allows(&self, v: &Version) -> bool {
        match self {
            Atom::Any => true,
            Atom::Ge(b) => v >= b,
            Atom::Gt(b) => v > b,
            Atom::Le(b) => v <= b,
            Atom::Lt(b) => v < b,
            Atom::Eq(b) => v == b,
            Atom::Ne(b) => v != b,
            Atom::Range(lo, hi) => v >= lo && v < hi,
            Atom::NotRange(lo, hi) => v < lo || v >= hi,
        }
    }
}

/// A parsed constraint: a union of intersections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    any_of: Vec<Vec<Atom>>,
}

/// The constraint did not parse (→ 422 "Invalid version constraint").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConstraint;

impl Constraint {
    /// Parses a Poetry constraint.
    pub fn parse(s: &str) -> Result<Constraint, InvalidConstraint> {
        let s = s.trim();
        if s.is_empty() || s.len() > 256 {
            return Err(InvalidConstraint);
        }
        let mut any_of = Vec::new();
        for alt in s.split('|').filter(|p| !p.trim().is_empty()) {
            let mut all_of = Vec::new();
            for single in split_and(alt)? {
                all_of.push(parse_single(&single)?);
            }
            if all_of.is_empty() {
                return Err(InvalidConstraint);
            }
            any_of.push(all_of);
        }
        if any_of.is_empty() {
            return Err(InvalidConstraint);
        }
        Ok(Constraint { any_of })
    }

    /// Whether `v` satisfies the constraint.
    pub fn allows(&self, v: &Version) -> bool {
        self.any_of
            .iter()
            .any(|all| all.iter().all(|a| a.allows(v)))
    }

    /// Poetry's `is_simple` (see the module doc).
    pub fn is_simple(&self) -> bool {
        match self.any_of.as_slice() {
            [single] => matches!(
                single.as_slice(),
                [Atom::Any
                    | Atom::Eq(_)
                    | Atom::Ne(_)
                    | Atom::Ge(_)
                    | Atom::Gt(_)
                    | Atom::Le(_)
                    | Atom::Lt(_)]
            ),
            _ => false,
        }
    }

    /// The highest version in `versions` that the constraint selects (stable ones only unless
    /// the constraint is simple). Returns its index.
    pub fn best<'v, I>(&self, versions: I) -> Option<usize>
    where
        I: IntoIterator<Item = &'v Version>,
    {
        let simple = self.is_simple();
        let mut best: Option<(usize, &Version)> = None;
        for (i, v) in versions.into_iter().enumerate() {
            if (!simple && !v.is_stable()) || !self.allows(v) {
                continue;
            }
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Splits a conjunction on commas and whitespace, gluing a bare operator to the version after it.
fn split_and(s: &str) -> Result<Vec<String>, InvalidConstraint> {
    let mut out: Vec<String> = Vec::new();
    let mut pending_op: Option<String> = None;
    for token in s.split(|c: char| c == ',' || c.is_whitespace()) {
        if token.is_empty() {
            continue;
        }
        let is_op_only = token
            .chars()
            .all(|c| matches!(c, '<' | '>' | '=' | '!' | '~' | '^'));
        if is_op_only {
            if pending_op.is_some() {
                return Err(InvalidConstraint);
            }
            pending_op = Some(token.to_string());
        } else {
            let mut t = pending_op.take().unwrap_or_default();
            t.push_str(token);
            out.push(t);
        }
    }
    if pending_op.is_some() {
        return Err(InvalidConstraint);
    }
    Ok(out)
}

fn is_wildcard(s: &str) -> bool {
    matches!(s, "*" | "x" | "X")
}

fn parse_single(s: &str) -> Result<Atom, InvalidConstraint> {
    let s = s.trim();
    let body = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    if !body.is_empty() && body.split('.').all(is_wildcard) {
        return Ok(Atom::Any);
    }
    let version = |t: &str| Version::parse(t).ok_or(InvalidConstraint);
    if let Some(rest) = s.strip_prefix("~=") {
        let v = version(rest)?;
        let len = v.release.len();
        let hi = if len >= 2 { v.bump(len - 1) } else { v.bump(1) };
        return Ok(Atom::Range(v, hi));
    }
    if let Some(rest) = s.strip_prefix('~') {
        let v = version(rest)?;
        let hi = if v.release.len() >= 2 {
            v.bump(2)
        } else {
            v.bump(1)
        };
        return Ok(Atom::Range(v, hi));
    }
    if let Some(rest) = s.strip_prefix('^') {
        let v = version(rest)?;
        let len = v.release.len();
        let first_non_zero = v.release.iter().position(|&c| c != 0);
        let idx = first_non_zero.unwrap_or(len.saturating_sub(1));
        let hi = v.bump(idx + 1);
        return Ok(Atom::Range(v, hi));
    }
    for (op, make) in [
        (">=", Atom::Ge as fn(Version) -> Atom),
        ("<=", Atom::Le),
        ("!=", Atom::Ne),
        ("==", Atom::Eq),
        (">", Atom::Gt),
        ("<", Atom::Lt),
        ("=", Atom::Eq),
    ] {
        if let Some(rest) = s.strip_prefix(op) {
            let rest = rest.trim();
            if let Some((lo, hi)) = wildcard_range(rest)? {
                return match op {
                    "==" | "=" => Ok(Atom::Range(lo, hi)),
                    "!=" => Ok(Atom::NotRange(lo, hi)),
                    _ => Err(InvalidConstraint),
                };
            }
            return Ok(make(version(rest)?));
        }
    }
    if let Some((lo, hi)) = wildcard_range(s)? {
        return Ok(Atom::Range(lo, hi));
    }
    Ok(Atom::Eq(version(s)?))
}

/// `1.*` / `1.2.x` → `[1.0, 2.0)` / `[1.2, 1.3)`; `None` when `s` has no trailing wildcard.
fn wildcard_range(s: &str) -> Result<Option<(Version, Version)>, InvalidConstraint> {
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    let Some(head) = s
        .strip_suffix(".*")
        .or_else(|| s.strip_suffix(".x"))
        .or_else(|| s.strip_suffix(".X"))
    else {
        return Ok(None);
    };
    let mut release = Vec::new();
    for part in head.split('.') {
        let (n, end) = number(part.as_bytes(), 0).ok_or(InvalidConstraint)?;
        if end != part.len() {
            return Err(InvalidConstraint);
        }
        release.push(n);
    }
    if release.is_empty() || release.len() > 16 {
        return Err(InvalidConstraint);
    }
    let lo = Version::from_release(release.clone());
    let hi = lo.bump(release.len());
    Ok(Some((lo, hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("bad version {s}"))
    }

    fn allows(c: &str, ver: &str) -> bool {
        Constraint::parse(c)
            .unwrap_or_else(|_| panic!("bad constraint {c}"))
            .allows(&v(ver))
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert!(v("1.0.1-dev") < v("1.0.1a1"));
        assert!(v("1.0.1a1") < v("1.0.1b0"));
        assert!(v("1.0.1b0") < v("1.0.1rc1"));
        assert!(v("1.0.1rc1") < v("1.0.1"));
        assert!(v("1.0.1") < v("1.0.1.post1"));
        assert!(v("1.0.1") < v("1.0.1-1"));
        assert!(v("1.0.1-alpha") < v("1.0.1"));
        assert!(v("1.0.0+local") == v("1.0.0"));
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(!v("1.0.1-dev").is_stable());
        assert!(!v("1.0.1-alpha").is_stable());
        assert!(v("1.0.1.post2").is_stable());
        for bad in [
            "",
            "abc",
            "1.",
            ".1",
            "1..2",
            "1.0.0-",
            "1.0.0 x",
            "99999999999999999999999",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn caret_tilde_and_wildcards() {
        assert!(allows("^1.0.0", "1.0.0"));
        assert!(allows("^1.0.0", "1.9.3"));
        assert!(!allows("^1.0.0", "2.0.0"));
        assert!(!allows("^1.0.0", "0.9.0"));
        assert!(allows("^0.2.3", "0.2.9"));
        assert!(!allows("^0.2.3", "0.3.0"));
        assert!(allows("^0.0.3", "0.0.3"));
        assert!(!allows("^0.0.3", "0.0.4"));
        assert!(allows("^0.0", "0.0.9"));
        assert!(!allows("^0.0", "0.1.0"));
        assert!(allows("^1", "1.5"));
        assert!(!allows("^2.0.0", "1.0.0"));
        assert!(allows("~1.2.3", "1.2.9"));
        assert!(!allows("~1.2.3", "1.3.0"));
        assert!(allows("~1", "1.9"));
        assert!(!allows("~1", "2.0"));
        assert!(allows("~=1.2", "1.9"));
        assert!(!allows("~=1.2", "2.0"));
        assert!(!allows("~=1.2.3", "1.3.0"));
        assert!(allows("1.*", "1.4.0"));
        assert!(!allows("1.*", "2.0.0"));
        assert!(allows("1.0.x", "1.0.7"));
        assert!(allows("==1.*", "1.0.0"));
        assert!(!allows("!=1.0.*", "1.0.5"));
        assert!(allows("!=1.0.*", "1.1.0"));
        for any in ["*", "x", "X", "*.*", "v*"] {
            assert!(allows(any, "7.0.0"), "{any}");
        }
    }

    #[test]
    fn comparisons_and_combinations() {
        assert!(allows("1.0.0", "1.0"));
        assert!(allows("=1.0.0", "1.0.0"));
        assert!(allows("==1.0.0", "1.0.0"));
        assert!(!allows("1.0.1", "1.0.0"));
        assert!(allows(">=1.0.0", "3.0"));
        assert!(!allows(">1.0.0", "1.0.0"));
        assert!(allows("<2", "1.99"));
        assert!(allows("<=1.0", "1.0.0"));
        assert!(!allows("!=1.0.0", "1.0.0"));
        assert!(allows(">=1.0, <2.0", "1.5.0"));
        assert!(!allows(">=1.0, <2.0", "2.0.0"));
        assert!(allows(">= 1.0 < 2.0", "1.5.0"));
        assert!(allows(">=1.0,<1.1 || >=3.0", "3.1.0"));
        assert!(allows("^2.0 | ^1.0", "1.0.0"));
        assert!(!allows("^2.0 || ^3.0", "1.0.0"));
    }

    #[test]
    fn invalid_constraints() {
        for bad in [
            "",
            " ",
            "abc",
            "^",
            ">=",
            ">= >= 1",
            "1.0 >=",
            "^x.y",
            "||",
            "1.*.3",
            "~",
            "=>1",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0",
            "^99999999999999999999999",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Constraint::parse(&"1".repeat(300)).is_err());
    }

    #[test]
    fn simple_constraints_may_select_prereleases() {
        let versions = [v("1.0.0"), v("1.0.1-alpha"), v("1.1.0-dev"), v("0.9.0")];
        let best = |c: &str| Constraint::parse(c).unwrap().best(versions.iter());
        assert_eq!(best("^1.0.0"), Some(0));
        assert_eq!(best(">=1.0.0"), Some(2));
        assert_eq!(best("1.0.1-alpha"), Some(1));
        assert_eq!(best("^0.9"), Some(3));
        assert_eq!(best("^2.0.0"), None);
        assert_eq!(best("*"), Some(2));
        assert!(Constraint::parse("1.0.0").unwrap().is_simple());
        assert!(!Constraint::parse("^1.0.0").unwrap().is_simple());
        assert!(!Constraint::parse(">=1,<2").unwrap().is_simple());
    }
}
