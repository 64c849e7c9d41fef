//! Manual, FastAPI/pydantic-shaped validation of JSON request bodies.
//!
//! Contract: `gitlab-ai-gateway.md` §3 (422 bodies) and the field tables in §1.1–§1.3.
//!
//! Why not `#[derive(Deserialize)]` straight into the request types: serde stops at the first
//! error, its messages quote the input (`invalid type: string "…"`), and it has no notion of
//! FastAPI `loc` paths. Here the body is parsed once into a [`serde_json::Value`] (values are
//! moved out of it, not copied) and each field is checked with pydantic's error `type`/`msg`
//! texts, collecting every issue. Nothing here echoes input.
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

/// `["body"]`.
pub fn body_loc() -> Loc {
    vec![LocPart::from("body")]
}

/// Parses a request body into a JSON object, or the 422 FastAPI would answer.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, GitlabError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GitlabError::validation(vec![ValidationIssue::new(
            "missing",
            body_loc(),
            "Field required",
        )]));
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

    fn missing(&mut self, loc: Loc) {
        self.push(ValidationIssue::new("missing", loc, "Field required"));
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
        let loc = at(base, key);
        match map.remove(key) {
            None => {
                self.missing(loc);
                None
            }
            Some(v) => self.string(v, loc, max_chars, strip),
        }
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
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.string(v, at(base, key), max_chars, strip),
        }
    }

    /// Checks one value as a string.
    pub fn string(
        &mut self,
        v: Value,
        loc: Loc,
        max_chars: Option<usize>,
        strip: bool,
    ) -> Option<String> {
        let Value::String(s) = v else {
            self.push(ValidationIssue::new(
                "string_type",
                loc,
                "Input should be a valid string",
            ));
            return None;
        };
        let s = if strip { s.trim().to_string() } else { s };
        if let Some(max) = max_chars {
            // A string of at most `max` bytes has at most `max` characters: skip counting.
            if s.len() > max && s.chars().count() > max {
                self.push(
                    ValidationIssue::new(
                        "string_too_long",
                        loc,
                        format!("String should have at most {max} characters"),
                    )
                    .with_ctx(json!({ "max_length": max })),
                );
                return None;
            }
        }
        Some(s)
    }

    /// Optional boolean with pydantic's lax coercions.
    pub fn opt_bool(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<bool> {
        let v = match map.remove(key) {
            None | Some(Value::Null) => return None,
            Some(v) => v,
        };
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
            self.push(ValidationIssue::new(kind, at(base, key), msg));
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
        let v = match map.remove(key) {
            None | Some(Value::Null) => return None,
            Some(v) => v,
        };
        let loc = at(base, key);
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
            self.push(ValidationIssue::new(kind, loc, msg));
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
        let v = match map.remove(key) {
            None | Some(Value::Null) => return None,
            Some(v) => v,
        };
        let loc = at(base, key);
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
                            loc,
                            "Input should be a valid integer, got a number with a fractional part",
                        ));
                        None
                    }
                    _ => {
                        self.push(ValidationIssue::new(
                            "int_parsing_size",
                            loc,
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
                        loc,
                        "Input should be a valid integer, unable to parse string as an integer",
                    ));
                    None
                }
            },
            _ => {
                self.push(ValidationIssue::new(
                    "int_type",
                    loc,
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
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.list(v, at(base, key), min_items, max_items),
        }
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
        let loc = at(base, key);
        match map.remove(key) {
            None => {
                self.missing(loc);
                None
            }
            Some(v) => self.list(v, loc, min_items, max_items),
        }
    }

    /// Checks one value as a list with length bounds.
    pub fn list(
        &mut self,
        v: Value,
        loc: Loc,
        min_items: usize,
        max_items: usize,
    ) -> Option<Vec<Value>> {
        let Value::Array(items) = v else {
            self.push(ValidationIssue::new(
                "list_type",
                loc,
                "Input should be a valid list",
            ));
            return None;
        };
        let n = items.len();
        if n > max_items {
            self.push(
                ValidationIssue::new(
                    "too_long",
                    loc,
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
                    loc,
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
        let loc = at(base, key);
        match map.remove(key) {
            None => {
                self.missing(loc);
                None
            }
            Some(v) => self.object(v, loc),
        }
    }

    /// Optional nested model; absent/null → `None`.
    pub fn opt_object(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.object(v, at(base, key)),
        }
    }

    /// Checks one value as a nested model (JSON object).
    pub fn object(&mut self, v: Value, loc: Loc) -> Option<Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.push(not_an_object(loc));
                None
            }
        }
    }

    /// Optional `dict[str, Any]` (pydantic's `dict_type` error).
    pub fn opt_dict(
        &mut self,
        map: &mut Map<String, Value>,
        key: &str,
        base: &[LocPart],
    ) -> Option<Map<String, Value>> {
        match map.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.push(ValidationIssue::new(
                    "dict_type",
                    at(base, key),
                    "Input should be a valid dictionary",
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(e: GitlabError) -> Value {
        serde_json::from_str::<Value>(&e.body).unwrap()["detail"].clone()
    }

    #[test]
    fn empty_body_is_missing() {
        for b in [&b""[..], b"  \n"] {
            let d = issues(parse_object(b).unwrap_err());
            assert_eq!(
                d,
                json!([{"type":"missing","loc":["body"],"msg":"Field required"}])
            );
        }
    }

    #[test]
    fn non_object_body() {
        let d = issues(parse_object(b"[1,2]").unwrap_err());
        assert_eq!(d[0]["type"], "model_attributes_type");
        assert_eq!(d[0]["loc"], json!(["body"]));
    }

    #[test]
    fn json_error_positions_are_characters() {
        let d = issues(parse_object(b"{x").unwrap_err());
        assert_eq!(
            d,
            json!([{"type":"json_invalid","loc":["body",1],"msg":"JSON decode error"}])
        );
        let d = issues(parse_object("{\"é\": 1,\n \"a\": tru}".as_bytes()).unwrap_err());
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
            assert_eq!(issues(e)[0]["type"], "json_invalid");
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
        let d = issues(v.finish().unwrap_err());
        let kinds: Vec<&str> = d
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["string_type", "string_type", "missing"]);
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
        let d = issues(v.finish().unwrap_err());
        let kinds: Vec<&str> = d
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
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
        let d = issues(v.finish().unwrap_err());
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
        let d = issues(v.finish().unwrap_err());
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
}
