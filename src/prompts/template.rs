//! The small template language of the prompt definitions in `src/prompts/definitions/`.
//!
//! Contract: `docs/gitlab-contract.md#named-prompts` (prompt `inputs` are the template variables; a
//! missing one is a 422 `{"detail":"'<key>'"}`). GitLab's gateway uses Jinja; this filter needs far
//! less, so the syntax is a strict, logic-less subset inspired by Mustache:
//!
//! | tag | meaning |
//! |---|---|
//! | `{{name}}` | the value of `name`; **required**: rendering fails with [`Missing`] when absent |
//! | `{{name?}}` | the value of `name`, or nothing when absent or `null` |
//! | `{{#name}}…{{/name}}` | the block, rendered only when `name` is *truthy* |
//! | `{{^name}}…{{/name}}` | the block, rendered only when `name` is *not* truthy |
//! | `{{! comment }}` | nothing |
//!
//! Names are `[A-Za-z0-9_]+`. Anything else between `{{` and `}}` (or an unclosed `{{`) is kept
//! literally. Values are JSON: a string is inserted as it is, `null` as nothing, a list of
//! strings one item per line (as the gateway's templates do with `"\n".join(libraries)`), any
//! other value as compact JSON (`[{"id":1}]`, `3`, `true`). *Truthy*: present, not `null`, not
//! `false`, not a blank string, not an empty list or object.
//!
//! Inserted values are never scanned again, so user text containing `{{...}}` stays literal.
//! Templates are this project's own files (trusted); values are untrusted and only copied.

use serde_json::{Map, Value};

use super::find_double;

/// A required variable was not provided (the name, as the gateway reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

/// How a template uses one variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `{{name}}` outside any section.
    Required,
    /// `{{name?}}`, a section name, or a `{{name}}` inside a section.
    Optional,
}

/// Renders `template` with `vars`. Fails on the first required variable that is missing.
pub fn render(template: &str, vars: &Map<String, Value>) -> Result<String, Missing> {
    let mut out = String::with_capacity(template.len());
    render_into(&mut out, template, vars, false)?;
    Ok(out)
}

/// Convenience: renders with string variables only.
pub fn render_str(template: &str, vars: &[(&str, &str)]) -> Result<String, Missing> {
    let map: Map<String, Value> = vars
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    render(template, &map)
}

/// The text a value renders to.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Appends [`value_text`] of `v` to `out` without building it first.
fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        Value::Array(items) if items.iter().all(Value::is_string) => {
            for (i, item) in items.iter().filter_map(Value::as_str).enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(item);
            }
        }
        other => out.push_str(&value_text(other)),
    }
}

/// Whether a section `{{#name}}` is rendered for this value.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Every variable a template mentions, in order of first appearance, with how it is used
/// (a variable both required and optional somewhere is reported as required).
pub fn variables(template: &str) -> Vec<(String, Usage)> {
    let mut found: Vec<(String, Usage)> = Vec::new();
    collect(template, false, &mut found);
    found
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One `{{...}}` tag found in a template.
enum Tag<'t> {
    Var(&'t str),
    OptVar(&'t str),
    /// `#name` (`inverted == false`) or `^name`, with the block body.
    Section {
        name: &'t str,
        inverted: bool,
        body: &'t str,
    },
    Comment,
}

/// Splits `tpl` at its next tag: (text before, tag, text after). `None` when there is none.
/// Malformed tags are skipped over (their `{{` becomes part of the text before).
fn next_tag(tpl: &str) -> Option<(&str, Tag<'_>, &str)> {
    let mut search_from = 0usize;
    loop {
        let open = search_from + find_double(tpl.get(search_from..)?, b'{')?;
        let after_open = tpl.get(open + 2..)?;
        let close = find_double(after_open, b'}')?;
        let inner = after_open.get(..close).unwrap_or("").trim();
        let after = after_open.get(close + 2..).unwrap_or("");
        let before = tpl.get(..open).unwrap_or("");
        if inner.starts_with('!') {
            return Some((before, Tag::Comment, after));
        }
        if let Some(name) = inner.strip_suffix('?') {
            if is_name(name) {
                return Some((before, Tag::OptVar(name), after));
            }
        } else if is_name(inner) {
            return Some((before, Tag::Var(inner), after));
        } else if let Some((inverted, name)) = inner
            .strip_prefix('#')
            .map(|n| (false, n.trim()))
            .or_else(|| inner.strip_prefix('^').map(|n| (true, n.trim())))
        {
            if is_name(name) {
                if let Some((body, rest)) = section_body(after, name) {
                    return Some((
                        before,
                        Tag::Section {
                            name,
                            inverted,
                            body,
                        },
                        rest,
                    ));
                }
            }
        }
        // Not a tag: keep "{{" literally and look further.
        search_from = open + 2;
    }
}

/// Finds the `{{/name}}` closing a section whose body starts at `s`, counting nested sections
/// of the same name. Returns (body, text after the closing tag).
fn section_body<'t>(s: &'t str, name: &str) -> Option<(&'t str, &'t str)> {
    // Tags `{{#name}}`, `{{^name}}` (open) and `{{/name}}` (close) all have this length.
    let tag_len = name.len() + 5;
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let at = pos + find_double(s.get(pos..)?, b'{')?;
        let tag = s.get(at + 2..).unwrap_or("");
        let named = tag
            .get(1..)
            .and_then(|t| t.strip_prefix(name))
            .is_some_and(|t| t.starts_with("}}"));
        match tag.as_bytes().first() {
            Some(b'#' | b'^') if named => {
                depth += 1;
                pos = at + tag_len;
            }
            Some(b'/') if named => {
                if depth == 0 {
                    return Some((s.get(..at)?, s.get(at + tag_len..)?));
                }
                depth -= 1;
                pos = at + tag_len;
            }
            // `{{{#name}}`: the tag may start at the next brace.
            _ => pos = at + 1,
        }
    }
}

fn render_into(
    out: &mut String,
    tpl: &str,
    vars: &Map<String, Value>,
    in_section: bool,
) -> Result<(), Missing> {
    let mut rest = tpl;
    while let Some((before, tag, after)) = next_tag(rest) {
        out.push_str(before);
        match tag {
            Tag::Var(name) => match vars.get(name) {
                Some(v) => push_value(out, v),
                None if in_section => {}
                None => return Err(Missing(name.to_string())),
            },
            Tag::OptVar(name) => {
                if let Some(v) = vars.get(name) {
                    push_value(out, v);
                }
            }
            Tag::Section {
                name,
                inverted,
                body,
            } => {
                if truthy(vars.get(name)) != inverted {
                    render_into(out, body, vars, true)?;
                }
            }
            Tag::Comment => {}
        }
        rest = after;
    }
    out.push_str(rest);
    Ok(())
}

fn note(found: &mut Vec<(String, Usage)>, name: &str, usage: Usage) {
    match found.iter_mut().find(|(n, _)| n == name) {
        Some((_, u)) => {
            if usage == Usage::Required {
                *u = Usage::Required;
            }
        }
        None => found.push((name.to_string(), usage)),
    }
}

fn collect(tpl: &str, in_section: bool, found: &mut Vec<(String, Usage)>) {
    let mut rest = tpl;
    while let Some((_, tag, after)) = next_tag(rest) {
        match tag {
            Tag::Var(name) if !in_section => note(found, name, Usage::Required),
            Tag::Var(name) | Tag::OptVar(name) => note(found, name, Usage::Optional),
            Tag::Section { name, body, .. } => {
                note(found, name, Usage::Optional);
                collect(body, true, found);
            }
            Tag::Comment => {}
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn variables_and_optional_variables() {
        let v = vars(json!({"a": "1", "n": 3, "l": ["x", "y"], "o": [{"k": 1}], "nul": null}));
        assert_eq!(
            render("<{{a}}|{{ a }}|{{n}}|{{l}}>", &v).unwrap(),
            "<1|1|3|x\ny>"
        );
        assert_eq!(render("{{o}}", &v).unwrap(), "[{\"k\":1}]");
        assert_eq!(
            render("[{{zz?}}][{{nul?}}][{{nul}}]", &v).unwrap(),
            "[][][]"
        );
        assert_eq!(render("{{b}}", &v), Err(Missing("b".into())));
        assert_eq!(render("", &v).unwrap(), "");
    }

    #[test]
    fn values_are_not_rescanned() {
        let v = vars(json!({"a": "{{b}} {{#b}}x{{/b}}", "b": "no"}));
        assert_eq!(render("{{a}}", &v).unwrap(), "{{b}} {{#b}}x{{/b}}");
    }

    #[test]
    fn literal_braces_are_kept() {
        let v = vars(json!({"a": "1"}));
        assert_eq!(
            render("{{ not a tag }} {{a}}", &v).unwrap(),
            "{{ not a tag }} 1"
        );
        assert_eq!(render("x {{a", &v).unwrap(), "x {{a");
        assert_eq!(render("}} {{{a}}}", &v).unwrap(), "}} {{{a}}}");
        assert_eq!(
            render("{{#a}}never closed", &v).unwrap(),
            "{{#a}}never closed"
        );
        assert_eq!(render("{{/a}}", &v).unwrap(), "{{/a}}");
        assert_eq!(render("é{{a}}é{{!c}}", &v).unwrap(), "é1é");
    }

    #[test]
    fn sections() {
        let v = vars(json!({"yes": "t", "blank": "  ", "empty": [], "obj": {"k": 1}, "f": false}));
        let t = "{{#yes}}Y{{/yes}}{{^yes}}N{{/yes}}|{{#blank}}B{{/blank}}{{^blank}}b{{/blank}}|\
                 {{#empty}}E{{/empty}}|{{#obj}}O{{/obj}}|{{#f}}F{{/f}}|{{#nope}}{{nope}}{{/nope}}";
        assert_eq!(render(t, &v).unwrap(), "Y|b||O||");
        // nested sections of the same name
        let t = "{{#yes}}a{{#yes}}b{{/yes}}c{{/yes}}d";
        assert_eq!(render(t, &v).unwrap(), "abcd");
        // required variables inside a skipped section are not needed
        assert_eq!(render("{{#nope}}{{missing}}{{/nope}}ok", &v).unwrap(), "ok");
        // ... and inside a rendered section they are optional
        assert_eq!(render("{{#yes}}[{{missing}}]{{/yes}}", &v).unwrap(), "[]");
    }

    #[test]
    fn variables_report() {
        let t = "{{a}} {{b?}} {{#c}}{{d}}{{/c}} {{a?}} {{b}}";
        assert_eq!(
            variables(t),
            vec![
                ("a".to_string(), Usage::Required),
                ("b".to_string(), Usage::Required),
                ("c".to_string(), Usage::Optional),
                ("d".to_string(), Usage::Optional),
            ]
        );
    }

    /// The section scan before it was written for speed: three `format!`ed tags and
    /// `str::find` each round.
    fn section_body_reference<'t>(s: &'t str, name: &str) -> Option<(&'t str, &'t str)> {
        let open_a = format!("{{{{#{name}}}}}");
        let open_b = format!("{{{{^{name}}}}}");
        let close = format!("{{{{/{name}}}}}");
        let mut depth = 0usize;
        let mut pos = 0usize;
        loop {
            let rest = s.get(pos..)?;
            let c = rest.find(&close)?;
            let o = [rest.find(&open_a), rest.find(&open_b)]
                .into_iter()
                .flatten()
                .min();
            match o {
                Some(o) if o < c => {
                    depth += 1;
                    pos += o + open_a.len();
                }
                _ => {
                    if depth == 0 {
                        let body = s.get(..pos + c)?;
                        let after = s.get(pos + c + close.len()..)?;
                        return Some((body, after));
                    }
                    depth -= 1;
                    pos += c + close.len();
                }
            }
        }
    }

    #[test]
    fn push_value_is_value_text() {
        for v in [
            json!("a"),
            json!(null),
            json!([]),
            json!(["x", "y"]),
            json!(["x", 1]),
            json!({"k": [1]}),
            json!(2.5),
            json!(false),
        ] {
            let mut out = String::from(">");
            push_value(&mut out, &v);
            assert_eq!(out, format!(">{}", value_text(&v)), "{v}");
        }
    }

    #[test]
    fn section_scan_matches_reference() {
        let pieces = [
            "{{#a}}", "{{^a}}", "{{/a}}", "{{#ab}}", "{{/ab}}", "{{/b}}", "{{", "}}", "{", "}",
            "#", "/", "a", "x", "é", "{{ /a}}", "{{/a }}",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(x % 9) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push_str(pieces[(x as usize) % pieces.len()]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for name in ["a", "ab"] {
                assert_eq!(
                    section_body(&s, name),
                    section_body_reference(&s, name),
                    "{s:?} {name}"
                );
            }
        }
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(null))));
        assert!(!truthy(Some(&json!(""))));
        assert!(truthy(Some(&json!(0))));
        assert!(truthy(Some(&json!("x"))));
        assert!(truthy(Some(&json!(true))));
    }
}
