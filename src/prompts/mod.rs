//! Prompt building: GitLab request fields → Anthropic Messages bodies.
//!
//! Contract: `docs/gitlab-contract.md#completion-prompt` (code completion: fill-in-the-middle,
//! temperature 0, 128 tokens, ~2048-token input budget with 7 % for the suffix) and
//! `#generation-prompt` (code generation: existing code around a cursor marker, optional related
//! files/snippets/libraries, assistant prefill `<new_code>`, stop at `</new_code>`, temperature
//! 0.2, 2048 tokens).
//!
//! The wording is this project's own. Templates are plain text files in
//! `src/prompts/templates/`, compiled in with `include_str!` and filled by [`render`], a tiny
//! `{{name}}` replacer (no template engine).
//!
//! * [`completion::completion_request`] — FIM completion prompt with the byte budget.
//! * [`generation::generation_request`] — code generation prompt.
//! * [`language::language_name`] — language name from the editor id or the file extension.
//! * [`budget`] — UTF-8-safe, line-preferring truncation helpers.
//!
//! Named prompts (`/v1/prompts/{id}`, `/v2/prompts/{id}`, Duo Chat; contract
//! `docs/gitlab-contract.md#named-prompts`, `#chat-agent`, `#chat-prompts`)
//! are data: one file per prompt id under `src/prompts/definitions/`.
//! * [`registry`] — the prompt ids, version selection ([`version`]), unit primitives.
//! * [`definition`] — the definition file format; [`template`] — its `{{var}}` language.
//! * [`conversation`] — system + role-tagged turns → a conversation Bedrock accepts.
//! * [`react`] — the Duo Chat ReAct prompt; [`date`] — `current_date` formats.

pub mod budget;
pub mod completion;
pub mod conversation;
pub mod date;
pub mod definition;
pub mod generation;
pub mod language;
pub mod react;
pub mod registry;
pub mod template;
pub mod version;

pub use completion::{completion_request, BudgetReport, CompletionInput, CompletionPrompt};
pub use generation::{generation_request, GenerationExample, GenerationInput};
pub use language::language_name;

/// Replaces every `{{name}}` in `template` whose name is in `vars` with its value, in a single
/// pass: values are never scanned again, so code that itself contains `{{...}}` is inserted
/// literally. Unknown `{{names}}` and unmatched braces are kept as they are.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let extra: usize = vars.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len().saturating_add(extra));
    let mut rest = template;
    while let Some(open) = find_double(rest, b'{') {
        let (before, after_open) = rest.split_at(open);
        out.push_str(before);
        let inner = after_open.get(2..).unwrap_or("");
        let Some(close) = find_double(inner, b'}') else {
            out.push_str(after_open);
            return out;
        };
        let name = inner.get(..close).unwrap_or("");
        match vars.iter().find(|(k, _)| *k == name.trim()) {
            Some((_, value)) => {
                out.push_str(value);
                rest = inner.get(close + 2..).unwrap_or("");
            }
            None => {
                // Keep the literal "{{" and continue scanning right after it.
                out.push_str("{{");
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `s` without trailing whitespace, in place (no copy).
pub(crate) fn trim_end_owned(mut s: String) -> String {
    s.truncate(s.trim_end().len());
    s
}

/// Byte offset of the first `{{` (or `}}`, ...: `byte` twice) in `s`. `str::find("{{")` sets up
/// a two-way substring searcher on every call, several times the cost of this `memchr`-based
/// scan for the one byte (docs/performance.md); `byte` must be ASCII.
pub(crate) fn find_double(s: &str, byte: u8) -> Option<usize> {
    let mut from = 0usize;
    loop {
        let at = from + s.get(from..)?.find(char::from(byte))?;
        if s.as_bytes().get(at + 1) == Some(&byte) {
            return Some(at);
        }
        from = at + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_double_is_find() {
        for s in [
            "", "{", "{{", "a{{", "a{b{{", "{{{", "é{é{{", "}}{{", "x}", "{}{}",
        ] {
            assert_eq!(find_double(s, b'{'), s.find("{{"), "{s}");
            assert_eq!(find_double(s, b'}'), s.find("}}"), "{s}");
        }
    }

    #[test]
    fn render_replaces_known_names_once() {
        assert_eq!(
            render("a {{x}} b {{ y }}", &[("x", "1"), ("y", "2")]),
            "a 1 b 2"
        );
        assert_eq!(render("{{x}}{{x}}", &[("x", "ab")]), "abab");
        // values are not re-expanded
        assert_eq!(render("{{x}}", &[("x", "{{y}}"), ("y", "no")]), "{{y}}");
        // unknown names and stray braces are kept
        assert_eq!(render("{{nope}} {{x}}", &[("x", "1")]), "{{nope}} 1");
        assert_eq!(render("a {{x", &[("x", "1")]), "a {{x");
        assert_eq!(render("}} {{{x}}}", &[("x", "1")]), "}} {{{x}}}");
        assert_eq!(render("", &[]), "");
        assert_eq!(render("é{{x}}é", &[("x", "ü")]), "éüé");
    }
}
