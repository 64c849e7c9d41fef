//! Manual, FastAPI/pydantic-shaped validation of JSON request bodies.
//!
//! Contract: `docs/gitlab-contract.md#validation-errors` (422 bodies) and the field tables of
//! `#code-completions` and `#code-generations-v3-v4`.
//!
//! Why not `#[derive(Deserialize)]` straight into the request types: serde stops at the first
//! error, its messages quote the input (`invalid type: string "…"`), and it has no notion of
//! FastAPI `loc` paths. Here the body is parsed once into a [`serde_json::Value`] (values are
//! moved out of it, not copied) and each field is checked with pydantic's error `type`/`msg`
//! texts, collecting every issue. Nothing here echoes input. A field's `loc` is built only when
//! it has an issue.
//!
//! For the Code Suggestions endpoints a typed, borrowed fast path runs first
//! ([`super::typed_body`]); it declines every body it cannot vouch for, so this module stays
//! the reference for what is accepted and the only source of 422 bodies.
//!
//! Coercions follow pydantic's lax mode where GitLab could plausibly rely on them: booleans
//! accept `0/1` and the usual strings (`"true"`, `"no"`…), integers accept integral floats and
//! numeric strings; strings are strict (a number is not a string).

use serde_json::{json, Map, Value};

use super::errors::{GitlabError, LocPart, ValidationIssue};

/// A FastAPI location path such as `["body","current_file","file_name"]`.
pub type Loc = Vec<LocPart>;

/// `base` + `part`.
pub fn at(base: &[LocPart], part: impl Into<LocPart>) -> Loc {
    let mut loc = base.to_vec();
    loc.push(part.into());
    loc
}

/// Where an issue goes, turned into a [`Loc`] only when there is an issue: most fields have
/// none, and a `Loc` is an allocation per part (docs/performance.md).
#[derive(Debug, Clone)]
enum LazyLoc<'a> {
    Built(Loc),
    /// Field `key` of the object at `base`.
    Field {
        base: &'a [LocPart],
        key: &'a str,
    },
}

impl LazyLoc<'_> {
    fn into_loc(self) -> Loc {
        match self {
            LazyLoc::Built(loc) => loc,
            LazyLoc::Field { base, key } => at(base, key),
        }
    }
}

/// `["body"]`.
pub fn body_loc() -> Loc {
    vec![LocPart::from("body")]
}

/// Parses a request body into a JSON object, or the 422 FastAPI would answer.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, GitlabError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GitlabError::validation(vec![missing(body_loc())]));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GitlabError::validation(vec![not_an_object(body_loc())])),
        Err(e) => Err(GitlabError::malformed_json_at(char_position(
            body,
            e.line(),
            e.column(),
        ))),
    }
}

/// Converts serde_json's 1-based line/column (columns count bytes) into a character offset,
/// like Python's `JSONDecodeError.pos`. Never panics, whatever the numbers.
fn char_position(body: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0usize;
    let mut current_line = 1usize;
    if line > 1 {
        for (i, b) in body.iter().enumerate() {
            if *b == b'\n' {
                current_line = current_line.saturating_add(1);
                if current_line == line {
                    offset = i.saturating_add(1);
                    break;
                }
            }
        }
    }
    let offset = offset
        .saturating_add(column.saturating_sub(1))
        .min(body.len());
    body.get(..offset)
        .map(|b| b.iter().filter(|&&c| (c & 0xC0) != 0x80).count())
        .unwrap_or(0)
}

fn not_an_object(loc: Loc) -> ValidationIssue {
    ValidationIssue::new(
        "model_attributes_type",
        loc,
        "Input should be a valid dictionary or object to extract fields from",
    )
}

/// pydantic's `missing` issue.
pub fn missing(loc: Loc) -> ValidationIssue {
    ValidationIssue::new("missing", loc, "Field required")
}

/// pydantic's `string_type` issue.
pub fn string_type(loc: Loc) -> ValidationIssue {
    ValidationIssue::new("string_type", loc, "Input should be a valid string")
}

/// pydantic's `list_type` issue.
pub fn list_type(loc: Loc) -> ValidationIssue {
    ValidationIssue::new("list_type", loc, "Input should be a valid list")
}

/// pydantic's `dict_type` issue (a `dict[...]` field, not a nested model).
pub fn dict_type(loc: Loc) -> ValidationIssue {
    ValidationIssue::new("dict_type", loc, "Input should be a valid dictionary")
}

/// `'a', 'b' or 'c'`: the `expected` text of pydantic's literal and enum errors.
fn expected_values(allowed: &[&str]) -> String {
    match allowed.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!(
            "{} or '{last}'",
            rest.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some((last, _)) => format!("'{last}'"),
        None => String::new(),
    }
}

/// pydantic's `literal_error` issue for a `Literal[...]` field.
pub fn literal_error(loc: Loc, allowed: &[&str]) -> ValidationIssue {
    let expected = expected_values(allowed);
    ValidationIssue::new("literal_error", loc, format!("Input should be {expected}"))
        .with_ctx(json!({ "expected": expected }))
}

/// pydantic's `enum` issue for an `Enum` field.
pub fn enum_error(loc: Loc, allowed: &[&str]) -> ValidationIssue {
    let expected = expected_values(allowed);
    ValidationIssue::new("enum", loc, format!("Input should be {expected}"))
        .with_ctx(json!({ "expected": expected }))
}

/// Collects issues while fields are taken out of JSON objects.
#[derive(Debug, Default)]
pub struct Validator {
    issues: Vec<ValidationIssue>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, issue: ValidationIssue) {
        self.issues.push(issue);
    }

    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }

    /// Number of issues collected so far.
    pub fn issue_count(&self) -> usize {
        self.issues.len()
    }

    /// `Ok(())` when nothing was wrong, else the 422 listing every issue.
    pub fn finish(self) -> Result<(), GitlabError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(GitlabError::validation(self.issues))
        }
    }

    /// Takes a required field out of `map` and checks it with `check`; absent → `missing`
    /// (a `null` value goes to `check`, which reports it as the wrong type, like pydantic).
    fn required<'k, T>(
        &mut self,
        map: &mut Map<String, Value>,
        key: &'k str,
        base: &'k [LocPart],
        check: impl FnOnce(&mut Self, Value, LazyLoc<'k>) -> Option<T>,
    ) -> Option<T> {
        let loc = LazyLoc::Field { base, key };
        match map.remove(key) {
            None => {
                self.push(missing(loc.into_loc()));
                None
            }
            Some(v) => check(self, v, loc),
        }
    }

    /// Takes an optional field out of `map` and checks it with `check`; absent or `null` →
    /// `None` without an issue.
    fn optional<'k, T>(
        &mut self,
        map: &mut Map<String, Value>,
        key: &'k str,
        base: &'k [LocPart],
        check: impl FnOnce(&mut Self, Value, LazyLoc<'k>) -> Option<T>,
    ) -> Option<T> {
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => check(self, v, LazyLoc::Field { base, key }),
        }
    }

    /// Required string (null counts as the wrong type, like pydantic).
    pub fn req_str(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
        max_chars: Option<usize>,
        strip: bool,
    ) -> Option<String> {
        self.required(map, key, base, |v, value, loc| {
            v.string_at(value, loc, max_chars, strip)
        })
    }

    /// Optional string: absent or `null` → `None`.
    pub fn opt_str(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
        max_chars: Option<usize>,
        strip: bool,
    ) -> Option<String> {
        self.optional(map, key, base, |v, value, loc| {
            v.string_at(value, loc, max_chars, strip)
        })
    }

    /// Checks one value as a string.
    pub fn string(
        &mut self,
        v: Value,
        loc: Loc,
        max_chars: Option<usize>,
        strip: bool,
    ) -> Option<String> {
        self.string_at(v, LazyLoc::Built(loc), max_chars, strip)
    }

    fn string_at(
        &mut self,
        v: Value,
        loc: LazyLoc<'_>,
        max_chars: Option<usize>,
        strip: bool,
    ) -> Option<String> {
        let Value::String(s) = v else {
            self.push(string_type(loc.into_loc()));
            return None;
        };
        let s = if strip { s.trim().to_string() } else { s };
        if let Some(max) = max_chars {
            // A string of at most `max` bytes has at most `max` characters: skip counting.
            if s.len() > max && s.chars().count() > max {
                self.push(
                    ValidationIssue::new(
                        "string_too_long",
                        loc.into_loc(),
                        format!("String should have at most {max} characters"),
                    )
                    .with_ctx(json!({ "max_length": max })),
                );
                return None;
            }
        }
        Some(s)
    }

    /// Required boolean with pydantic's lax coercions (`null` is `bool_type`).
    pub fn req_bool(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<bool> {
        self.required(map, key, base, Self::boolean)
    }

    /// Optional boolean with pydantic's lax coercions.
    pub fn opt_bool(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<bool> {
        self.optional(map, key, base, Self::boolean)
    }

    /// Checks one value as a boolean with pydantic's lax coercions.
    fn boolean(&mut self, v: Value, loc: LazyLoc<'_>) -> Option<bool> {
        let parsed = match &v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            let (kind, msg) = if matches!(v, Value::String(_) | Value::Number(_)) {
                (
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                )
            } else {
                ("bool_type", "Input should be a valid boolean")
            };
            self.push(ValidationIssue::new(kind, loc.into_loc(), msg));
        }
        parsed
    }

    /// Optional float with pydantic's lax coercions (numbers and numeric strings).
    pub fn opt_float(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<f64> {
        self.optional(map, key, base, Self::float)
    }

    /// Checks one value as a float with pydantic's lax coercions.
    fn float(&mut self, v: Value, loc: LazyLoc<'_>) -> Option<f64> {
        let parsed = match &v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        if parsed.is_none() {
            let (kind, msg) = if matches!(v, Value::String(_)) {
                (
                    "float_parsing",
                    "Input should be a valid number, unable to parse string as a number",
                )
            } else {
                ("float_type", "Input should be a valid number")
            };
            self.push(ValidationIssue::new(kind, loc.into_loc(), msg));
        }
        parsed
    }

    /// Optional integer with pydantic's lax coercions.
    pub fn opt_int(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<i64> {
        self.optional(map, key, base, Self::int)
    }

    /// Checks one value as an integer with pydantic's lax coercions.
    fn int(&mut self, v: Value, loc: LazyLoc<'_>) -> Option<i64> {
        match &v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    return Some(i);
                }
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
                    Some(f) if f.is_finite() && f.fract() != 0.0 => {
                        self.push(ValidationIssue::new(
                            "int_from_float",
                            loc.into_loc(),
                            "Input should be a valid integer, got a number with a fractional part",
                        ));
                        None
                    }
                    _ => {
                        self.push(ValidationIssue::new(
                            "int_parsing_size",
                            loc.into_loc(),
                            "Unable to parse input string as an integer, exceeded maximum size",
                        ));
                        None
                    }
                }
            }
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.push(ValidationIssue::new(
                        "int_parsing",
                        loc.into_loc(),
                        "Input should be a valid integer, unable to parse string as an integer",
                    ));
                    None
                }
            },
            _ => {
                self.push(ValidationIssue::new(
                    "int_type",
                    loc.into_loc(),
                    "Input should be a valid integer",
                ));
                None
            }
        }
    }

    /// Optional list with length bounds; absent/null → `None`.
    pub fn opt_list(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
        min_items: usize,
        max_items: usize,
    ) -> Option<Vec<Value>> {
        self.optional(map, key, base, |v, value, loc| {
            v.list_at(value, loc, min_items, max_items)
        })
    }

    /// Required list with length bounds.
    pub fn req_list(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
        min_items: usize,
        max_items: usize,
    ) -> Option<Vec<Value>> {
        self.required(map, key, base, |v, value, loc| {
            v.list_at(value, loc, min_items, max_items)
        })
    }

    /// Checks one value as a list with length bounds.
    pub fn list(
        &mut self,
        v: Value,
        loc: Loc,
        min_items: usize,
        max_items: usize,
    ) -> Option<Vec<Value>> {
        self.list_at(v, LazyLoc::Built(loc), min_items, max_items)
    }

    fn list_at(
        &mut self,
        v: Value,
        loc: LazyLoc<'_>,
        min_items: usize,
        max_items: usize,
    ) -> Option<Vec<Value>> {
        let Value::Array(items) = v else {
            self.push(list_type(loc.into_loc()));
            return None;
        };
        let n = items.len();
        if n > max_items {
            self.push(
                ValidationIssue::new(
                    "too_long",
                    loc.into_loc(),
                    format!("List should have at most {max_items} items after validation, not {n}"),
                )
                .with_ctx(
                    json!({"field_type": "List", "max_length": max_items, "actual_length": n}),
                ),
            );
            return None;
        }
        if n < min_items {
            let plural = if min_items == 1 { "item" } else { "items" };
            self.push(
                ValidationIssue::new(
                    "too_short",
                    loc.into_loc(),
                    format!(
                        "List should have at least {min_items} {plural} after validation, not {n}"
                    ),
                )
                .with_ctx(
                    json!({"field_type": "List", "min_length": min_items, "actual_length": n}),
                ),
            );
            return None;
        }
        Some(items)
    }

    /// Required nested model (JSON object).
    pub fn req_object(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        self.required(map, key, base, Self::object_at)
    }

    /// Optional nested model; absent/null → `None`.
    pub fn opt_object(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        self.optional(map, key, base, Self::object_at)
    }

    /// Checks one value as a nested model (JSON object).
    pub fn object(&mut self, v: Value, loc: Loc) -> Option<Map<String, Value>> {
        self.object_at(v, LazyLoc::Built(loc))
    }

    fn object_at(&mut self, v: Value, loc: LazyLoc<'_>) -> Option<Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.push(not_an_object(loc.into_loc()));
                None
            }
        }
    }

    /// Required `dict[str, Any]` (pydantic's `dict_type` error; `null` is `dict_type`).
    pub fn req_dict(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        self.required(map, key, base, Self::dict)
    }

    /// Optional `dict[str, Any]` (pydantic's `dict_type` error).
    pub fn opt_dict(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        self.optional(map, key, base, Self::dict)
    }

    /// Checks one value as a `dict[str, Any]`.
    fn dict(&mut self, v: Value, loc: LazyLoc<'_>) -> Option<Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.push(dict_type(loc.into_loc()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::errors::testing::{detail, issue_types};

    #[test]
    fn empty_body_is_missing() {
        for b in [&b""[..], b"  \n"] {
            let d = detail(&parse_object(b).unwrap_err());
            assert_eq!(
                d,
                json!([{"type":"missing","loc":["body"],"msg":"Field required"}])
            );
        }
    }

    #[test]
    fn non_object_body() {
        let d = detail(&parse_object(b"[1,2]").unwrap_err());
        assert_eq!(d[0]["type"], "model_attributes_type");
        assert_eq!(d[0]["loc"], json!(["body"]));
    }

    #[test]
    fn json_error_positions_are_characters() {
        let d = detail(&parse_object(b"{x").unwrap_err());
        assert_eq!(
            d,
            json!([{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error"}])
        );
        let d = detail(&parse_object("{\"é\": 1,\n \"a\": tru}".as_bytes()).unwrap_err());
        assert_eq!(d[0]["type"], "json_invalid");
        let pos = d[0]["loc"][1].as_u64().unwrap();
        assert!((14..=19).contains(&pos), "{pos}");
        // unterminated, truncated, deeply nested, invalid UTF-8: all 422 json_invalid
        let deep = "[".repeat(10_000);
        for b in [
            &b"{\"a\":"[..],
            b"{\"a\":\"\xff\"}",
            deep.as_bytes(),
            b"\xef\xbb\xbf{}",
        ] {
            let e = parse_object(b).unwrap_err();
            assert_eq!(e.status, 422);
            assert_eq!(detail(&e)[0]["type"], "json_invalid");
        }
    }

    #[test]
    fn char_position_never_panics() {
        assert_eq!(char_position(b"", 99, 99), 0);
        assert_eq!(char_position(b"ab\ncd", 2, 2), 4);
        assert_eq!(char_position(b"ab\ncd", 0, 0), 0);
        assert_eq!(char_position(b"ab", 1, usize::MAX), 2);
    }

    #[test]
    fn strings() {
        let mut v = Validator::new();
        let mut m = json!({"a": "  x  ", "b": 5, "c": null, "d": "ééé"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            v.req_str(&mut m, "a", &body_loc(), Some(1), true)
                .as_deref(),
            Some("x")
        );
        assert_eq!(v.req_str(&mut m, "b", &body_loc(), None, false), None);
        assert_eq!(v.req_str(&mut m, "c", &body_loc(), None, false), None);
        assert_eq!(
            v.opt_str(&mut m, "d", &body_loc(), Some(3), false)
                .as_deref(),
            Some("ééé")
        );
        assert_eq!(v.req_str(&mut m, "zz", &body_loc(), None, false), None);
        let e = v.finish().unwrap_err();
        let d = detail(&e);
        assert_eq!(issue_types(&e), ["string_type", "string_type", "missing"]);
        assert_eq!(d[2]["loc"], json!(["body", "zz"]));
    }

    #[test]
    fn lax_bool_and_int() {
        let mut v = Validator::new();
        let mut m = json!({"a": "true", "b": 0, "c": "maybe", "d": [], "e": "12", "f": 3.0, "g": 3.5, "h": "x", "i": true})
            .as_object()
            .cloned()
            .unwrap();
        let b = body_loc();
        assert_eq!(v.opt_bool(&mut m, "a", &b), Some(true));
        assert_eq!(v.opt_bool(&mut m, "b", &b), Some(false));
        assert_eq!(v.opt_bool(&mut m, "c", &b), None);
        assert_eq!(v.opt_bool(&mut m, "d", &b), None);
        assert_eq!(v.opt_int(&mut m, "e", &b), Some(12));
        assert_eq!(v.opt_int(&mut m, "f", &b), Some(3));
        assert_eq!(v.opt_int(&mut m, "g", &b), None);
        assert_eq!(v.opt_int(&mut m, "h", &b), None);
        assert_eq!(v.opt_int(&mut m, "i", &b), None);
        assert_eq!(
            issue_types(&v.finish().unwrap_err()),
            [
                "bool_parsing",
                "bool_type",
                "int_from_float",
                "int_parsing",
                "int_type"
            ]
        );
    }

    #[test]
    fn floats() {
        let mut v = Validator::new();
        let mut m = json!({"a": 0.5, "b": 1, "c": " 0.25 ", "d": "x", "e": [], "f": null})
            .as_object()
            .cloned()
            .unwrap();
        let b = body_loc();
        assert_eq!(v.opt_float(&mut m, "a", &b), Some(0.5));
        assert_eq!(v.opt_float(&mut m, "b", &b), Some(1.0));
        assert_eq!(v.opt_float(&mut m, "c", &b), Some(0.25));
        assert_eq!(v.opt_float(&mut m, "d", &b), None);
        assert_eq!(v.opt_float(&mut m, "e", &b), None);
        assert_eq!(v.opt_float(&mut m, "f", &b), None);
        assert_eq!(v.issue_count(), 2);
        let d = detail(&v.finish().unwrap_err());
        assert_eq!(d[0]["type"], "float_parsing");
        assert_eq!(d[1]["type"], "float_type");
    }

    #[test]
    fn lists() {
        let mut v = Validator::new();
        let mut m = json!({"a": [1, 2, 3], "b": [], "c": {}, "d": [1]})
            .as_object()
            .cloned()
            .unwrap();
        let b = body_loc();
        assert!(v.opt_list(&mut m, "a", &b, 0, 2).is_none());
        assert!(v.req_list(&mut m, "b", &b, 1, 2).is_none());
        assert!(v.opt_list(&mut m, "c", &b, 0, 2).is_none());
        assert_eq!(v.opt_list(&mut m, "d", &b, 1, 1).map(|l| l.len()), Some(1));
        let d = detail(&v.finish().unwrap_err());
        assert_eq!(
            d[0]["msg"],
            "List should have at most 2 items after validation, not 3"
        );
        assert_eq!(
            d[1]["msg"],
            "List should have at least 1 item after validation, not 0"
        );
        assert_eq!(d[2]["type"], "list_type");
    }
    #[test]
    fn required_bool_and_dict() {
        let mut v = Validator::new();
        let mut m = json!({"a": null, "b": "yes", "c": null, "d": {"x": 1}, "e": []})
            .as_object()
            .cloned()
            .unwrap();
        let b = body_loc();
        assert_eq!(v.req_bool(&mut m, "a", &b), None);
        assert_eq!(v.req_bool(&mut m, "b", &b), Some(true));
        assert_eq!(v.req_bool(&mut m, "zz", &b), None);
        assert_eq!(v.req_dict(&mut m, "c", &b), None);
        assert_eq!(v.req_dict(&mut m, "d", &b).map(|d| d.len()), Some(1));
        assert_eq!(v.opt_dict(&mut m, "e", &b), None);
        let d = detail(&v.finish().unwrap_err());
        assert_eq!(
            d,
            json!([
                {"type": "bool_type", "loc": ["body", "a"], "msg": "Input should be a valid boolean"},
                {"type": "missing", "loc": ["body", "zz"], "msg": "Field required"},
                {"type": "dict_type", "loc": ["body", "c"], "msg": "Input should be a valid dictionary"},
                {"type": "dict_type", "loc": ["body", "e"], "msg": "Input should be a valid dictionary"}
            ])
        );
    }

    #[test]
    fn literal_and_enum_texts() {
        let e =
            serde_json::to_value(enum_error(body_loc(), &["system", "user", "assistant"])).unwrap();
        assert_eq!(e["type"], "enum");
        assert_eq!(e["msg"], "Input should be 'system', 'user' or 'assistant'");
        assert_eq!(e["ctx"]["expected"], "'system', 'user' or 'assistant'");
        let e = serde_json::to_value(literal_error(body_loc(), &["issue"])).unwrap();
        assert_eq!(
            (&e["type"], &e["msg"]),
            (&json!("literal_error"), &json!("Input should be 'issue'"))
        );
        assert_eq!(expected_values(&[]), "");
    }
}
