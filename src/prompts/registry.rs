//! The prompt registry: every named prompt this gateway serves, as data.
//!
//! Contract: `docs/gitlab-contract.md#named-prompts` (prompt ids, unit primitives, version
//! constraints and their errors) and `#scopes` (a prompt's unit primitives are the scopes it
//! needs).
//!
//! Each prompt is one file `src/prompts/definitions/<prompt id>.prompt` (format:
//! [`super::definition`]), compiled in with `include_str!` and parsed once, at first use. A file
//! that does not parse is left out (and logged); the unit tests parse and render all of them.
//!
//! Unit primitives, as in GitLab's gateway (claude_3 prompts of AIGW 18.5): `chat/react`,
//! `chat/agent`, `chat/commit_reader` → `duo_chat`; `chat/build_reader` → `ask_build`;
//! `chat/documentation_search` → `documentation_search`; `chat/epic_reader` → `ask_epic`;
//! `chat/explain_code` → `explain_code`; `chat/explain_vulnerability` → `explain_vulnerability`;
//! `chat/fix_code` → `fix_code`; `chat/issue_reader` → `ask_issue`;
//! `chat/merge_request_reader` → `ask_merge_request`; `chat/refactor_code` → `refactor_code`;
//! `chat/summarize_comments` → `summarize_comments`; `chat/troubleshoot_job` →
//! `troubleshoot_job`; `chat/work_item_reader` → `ask_work_item`; `chat/write_tests` →
//! `write_tests`; `code_suggestions/completions` and `model_configuration/check` →
//! `complete_code`; `code_suggestions/generations` → `generate_code`; `generate_description` →
//! `generate_issue_description`; `generate_commit_message`, `glab_ask_git_command`,
//! `resolve_vulnerability`, `review_merge_request`, `summarize_new_merge_request`,
//! `summarize_review` → the unit primitive of the same name.

use std::sync::OnceLock;

use super::definition::Definition;
use super::version::{Constraint, InvalidConstraint};

/// The constraint used when a request has no (or an empty) `prompt_version`.
pub const DEFAULT_CONSTRAINT: &str = "^1.0.0";

/// `(prompt id, file text)` of every definition.
const SOURCES: &[(&str, &str)] = &[
    ("chat/agent", include_str!("definitions/chat/agent.prompt")),
    (
        "chat/build_reader",
        include_str!("definitions/chat/build_reader.prompt"),
    ),
    (
        "chat/commit_reader",
        include_str!("definitions/chat/commit_reader.prompt"),
    ),
    (
        "chat/documentation_search",
        include_str!("definitions/chat/documentation_search.prompt"),
    ),
    (
        "chat/epic_reader",
        include_str!("definitions/chat/epic_reader.prompt"),
    ),
    (
        "chat/explain_code",
        include_str!("definitions/chat/explain_code.prompt"),
    ),
    (
        "chat/explain_vulnerability",
        include_str!("definitions/chat/explain_vulnerability.prompt"),
    ),
    (
        "chat/fix_code",
        include_str!("definitions/chat/fix_code.prompt"),
    ),
    (
        "chat/issue_reader",
        include_str!("definitions/chat/issue_reader.prompt"),
    ),
    (
        "chat/merge_request_reader",
        include_str!("definitions/chat/merge_request_reader.prompt"),
    ),
    ("chat/react", include_str!("definitions/chat/react.prompt")),
    (
        "chat/refactor_code",
        include_str!("definitions/chat/refactor_code.prompt"),
    ),
    (
        "chat/summarize_comments",
        include_str!("definitions/chat/summarize_comments.prompt"),
    ),
    (
        "chat/troubleshoot_job",
        include_str!("definitions/chat/troubleshoot_job.prompt"),
    ),
    (
        "chat/work_item_reader",
        include_str!("definitions/chat/work_item_reader.prompt"),
    ),
    (
        "chat/write_tests",
        include_str!("definitions/chat/write_tests.prompt"),
    ),
    (
        "code_suggestions/completions",
        include_str!("definitions/code_suggestions/completions.prompt"),
    ),
    (
        "code_suggestions/generations",
        include_str!("definitions/code_suggestions/generations.prompt"),
    ),
    (
        "generate_commit_message",
        include_str!("definitions/generate_commit_message.prompt"),
    ),
    (
        "generate_description",
        include_str!("definitions/generate_description.prompt"),
    ),
    (
        "glab_ask_git_command",
        include_str!("definitions/glab_ask_git_command.prompt"),
    ),
    (
        "model_configuration/check",
        include_str!("definitions/model_configuration/check.prompt"),
    ),
    (
        "resolve_vulnerability",
        include_str!("definitions/resolve_vulnerability.prompt"),
    ),
    (
        "review_merge_request",
        include_str!("definitions/review_merge_request.prompt"),
    ),
    (
        "summarize_new_merge_request",
        include_str!("definitions/summarize_new_merge_request.prompt"),
    ),
    (
        "summarize_review",
        include_str!("definitions/summarize_review.prompt"),
    ),
];

/// Why a lookup failed (each is a different GitLab error answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No prompt with that id (404 `Prompt '<id>' not found`).
    NotFound,
    /// The constraint does not parse (422 `Invalid version constraint`).
    InvalidConstraint,
    /// No version matches (400 `No prompt version found matching the query: <constraint>`).
    NoMatch(String),
}

impl From<InvalidConstraint> for LookupError {
    fn from(_: InvalidConstraint) -> Self {
        LookupError::InvalidConstraint
    }
}

fn parse_all() -> Vec<Definition> {
    SOURCES
        .iter()
        .filter_map(|(id, text)| match Definition::parse(id, text) {
            Ok(d) => Some(d),
            Err(e) => {
                log::error!("prompt definition {id} is invalid and was skipped: {e}");
                None
            }
        })
        .collect()
}

/// Every valid definition (parsed at first use).
pub fn all() -> &'static [Definition] {
    static DEFINITIONS: OnceLock<Vec<Definition>> = OnceLock::new();
    DEFINITIONS.get_or_init(parse_all)
}

/// Finds prompt `id` in the version selected by `constraint` (`None` or blank → `^1.0.0`).
pub fn lookup(id: &str, constraint: Option<&str>) -> Result<&'static Definition, LookupError> {
    let candidates: Vec<&'static Definition> = all().iter().filter(|d| d.id == id).collect();
    if candidates.is_empty() {
        return Err(LookupError::NotFound);
    }
    let text = constraint
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_CONSTRAINT);
    let parsed = Constraint::parse(text)?;
    parsed
        .best(candidates.iter().map(|d| &d.version))
        .and_then(|i| candidates.get(i).copied())
        .ok_or_else(|| LookupError::NoMatch(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::definition::{Kind, SectionRole};
    use crate::prompts::template::{variables, Usage};
    use serde_json::{json, Map, Value};

    #[test]
    fn every_definition_parses_and_its_file_matches_its_id() {
        for (id, text) in SOURCES {
            let d = Definition::parse(id, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d.version_text, "1.0.0", "{id}");
            assert!(!d.name.is_empty());
        }
        assert_eq!(all().len(), SOURCES.len());
        // the brief's list of ids
        for id in [
            "chat/react",
            "chat/agent",
            "chat/explain_code",
            "chat/refactor_code",
            "chat/fix_code",
            "chat/write_tests",
            "chat/troubleshoot_job",
            "chat/summarize_comments",
            "chat/explain_vulnerability",
            "chat/build_reader",
            "chat/commit_reader",
            "chat/documentation_search",
            "chat/epic_reader",
            "chat/issue_reader",
            "chat/merge_request_reader",
            "chat/work_item_reader",
            "code_suggestions/completions",
            "code_suggestions/generations",
            "generate_commit_message",
            "generate_description",
            "summarize_new_merge_request",
            "summarize_review",
            "review_merge_request",
            "resolve_vulnerability",
            "glab_ask_git_command",
            "model_configuration/check",
        ] {
            assert!(lookup(id, None).is_ok(), "{id}");
        }
    }

    #[test]
    fn unit_primitives_follow_the_gateway() {
        let up = |id: &str| lookup(id, None).unwrap().unit_primitives.join(",");
        for (id, expected) in [
            ("chat/react", "duo_chat"),
            ("chat/agent", "duo_chat"),
            ("chat/commit_reader", "duo_chat"),
            ("chat/build_reader", "ask_build"),
            ("chat/documentation_search", "documentation_search"),
            ("chat/epic_reader", "ask_epic"),
            ("chat/explain_code", "explain_code"),
            ("chat/explain_vulnerability", "explain_vulnerability"),
            ("chat/fix_code", "fix_code"),
            ("chat/issue_reader", "ask_issue"),
            ("chat/merge_request_reader", "ask_merge_request"),
            ("chat/refactor_code", "refactor_code"),
            ("chat/summarize_comments", "summarize_comments"),
            ("chat/troubleshoot_job", "troubleshoot_job"),
            ("chat/work_item_reader", "ask_work_item"),
            ("chat/write_tests", "write_tests"),
            ("code_suggestions/completions", "complete_code"),
            ("code_suggestions/generations", "generate_code"),
            ("generate_commit_message", "generate_commit_message"),
            ("generate_description", "generate_issue_description"),
            ("glab_ask_git_command", "glab_ask_git_command"),
            ("resolve_vulnerability", "resolve_vulnerability"),
            ("review_merge_request", "review_merge_request"),
            ("summarize_new_merge_request", "summarize_new_merge_request"),
            ("summarize_review", "summarize_review"),
            ("model_configuration/check", "complete_code"),
        ] {
            assert_eq!(up(id), expected, "{id}");
        }
        let check = lookup("model_configuration/check", None).unwrap();
        assert_eq!(check.max_tokens, 12);
        let react = lookup("chat/react", None).unwrap();
        assert_eq!(react.stop, ["Observation:"]);
        assert_eq!(react.kind, Kind::Agent);
        assert_eq!(react.timeout_secs, 30);
    }

    #[test]
    fn version_selection_and_errors() {
        assert_eq!(lookup("nope", None), Err(LookupError::NotFound));
        assert_eq!(lookup("chat", None), Err(LookupError::NotFound));
        assert_eq!(lookup("nope", Some("bad")), Err(LookupError::NotFound));
        for ok in [
            "^1.0.0",
            "1.0.0",
            "~1.0",
            ">=1",
            "*",
            "",
            "1.*",
            "^1.0.0 || ^2.0.0",
        ] {
            assert!(lookup("chat/explain_code", Some(ok)).is_ok(), "{ok}");
        }
        assert_eq!(
            lookup("chat/explain_code", Some("^2.0.0")),
            Err(LookupError::NoMatch("^2.0.0".into()))
        );
        assert_eq!(
            lookup("chat/explain_code", Some("1.0.1-dev")),
            Err(LookupError::NoMatch("1.0.1-dev".into()))
        );
        assert_eq!(
            lookup("chat/explain_code", Some("not a version")),
            Err(LookupError::InvalidConstraint)
        );
    }

    /// A representative value for an input variable.
    fn sample(name: &str) -> Value {
        match name {
            "libraries" | "related_files" | "related_snippets" => json!(["serde", "tokio"]),
            "documents" => json!([{"id": "a1", "content": "Protect a branch in Settings."}]),
            "examples_array" => json!([{"example": "sum", "response": "a + b"}]),
            _ => json!(format!("<{name}>")),
        }
    }

    fn render_all(with_optional: bool) {
        for d in all() {
            let mut vars = Map::new();
            let mut names = Vec::new();
            for s in &d.messages {
                names.extend(variables(&s.template));
            }
            for (name, usage) in &names {
                if usage == &Usage::Required || with_optional {
                    vars.insert(name.clone(), sample(name));
                }
            }
            vars.insert("current_date".into(), json!("March 07, 2025"));
            let r = d
                .render(&vars)
                .unwrap_or_else(|m| panic!("{}: missing {:?}", d.id, m));
            for text in r.system.iter().chain(r.turns.iter().map(|(_, t)| t)) {
                assert!(!text.contains("{{"), "{}: unrendered tag in {text}", d.id);
            }
            if d.kind == Kind::Prompt {
                assert!(
                    r.turns
                        .iter()
                        .any(|(role, t)| *role == SectionRole::User && !t.trim().is_empty()),
                    "{}",
                    d.id
                );
                // every required input shows up in the rendered text
                for (name, usage) in &names {
                    if *usage == Usage::Required && name != "current_date" {
                        let v = crate::prompts::template::value_text(&sample(name));
                        let all_text: String = r
                            .system
                            .iter()
                            .chain(r.turns.iter().map(|(_, t)| t))
                            .cloned()
                            .collect();
                        assert!(all_text.contains(&v), "{}: {name}", d.id);
                    }
                }
            }
            // the prefill never ends with whitespace after conversation building
            let turns: Vec<_> = r
                .turns
                .iter()
                .map(|(role, t)| {
                    let role = if *role == SectionRole::User {
                        crate::bedrock::messages::Role::User
                    } else {
                        crate::bedrock::messages::Role::Assistant
                    };
                    (role, t.clone())
                })
                .collect();
            let (_, messages) = crate::prompts::conversation::build(&r.system, turns);
            if let Some(last) = messages.last() {
                assert_eq!(last.content.trim_end(), last.content, "{}", d.id);
            }
        }
    }

    #[test]
    fn every_definition_renders_with_required_inputs_only() {
        render_all(false);
    }

    #[test]
    fn every_definition_renders_with_all_inputs() {
        render_all(true);
    }

    #[test]
    fn a_missing_required_input_is_named() {
        let d = lookup("generate_commit_message", None).unwrap();
        let e = d.render(&Map::new()).unwrap_err();
        assert_eq!(e.0, "diff");
    }
}
