//! Read-only access to request headers, independent of the proxy-wasm host.
//!
//! The host hands over Envoy's header list (`Vec<(String, String)>`); the auth rules only
//! need "the value of header X". Names are compared ASCII-case-insensitively, like the
//! gateway, which lower-cases every header name before looking anything up
//! (docs/gitlab-contract.md#headers). When a header appears more than once, the
//! first occurrence wins.
//!
//! Note: on a slice, the inherent `<[T]>::get(usize)` shadows this trait method in method
//! syntax; call `Headers::get(slice, name)` (generic code over `H: Headers` is unaffected).

/// Header lookup by lower-case name.
pub trait Headers {
    /// Value of the first header whose name equals `lower_name` ignoring ASCII case.
    /// `lower_name` must already be lower case (e.g. `"authorization"`).
    fn get(&self, lower_name: &str) -> Option<&str>;
}

impl Headers for [(String, String)] {
    fn get(&self, lower_name: &str) -> Option<&str> {
        self.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(lower_name))
            .map(|(_, value)| value.as_str())
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, lower_name: &str) -> Option<&str> {
        Headers::get(self.as_slice(), lower_name)
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    fn list(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn case_insensitive_first_wins() {
        let h = list(&[
            ("X-Gitlab-Realm", "self-managed"),
            ("x-gitlab-realm", "saas"),
        ]);
        assert_eq!(h.get("x-gitlab-realm"), Some("self-managed"));
        assert_eq!(
            Headers::get(h.as_slice(), "x-gitlab-realm"),
            Some("self-managed")
        );
        assert_eq!(h.get("authorization"), None);
    }

    #[test]
    fn empty_list() {
        let h: Vec<(String, String)> = Vec::new();
        assert_eq!(h.get("authorization"), None);
    }
}
