//! Code completion (fill-in-the-middle) prompt.
//!
//! Contract: `docs/gitlab-contract.md#completion-prompt`. Settings: temperature 0.0, `max_tokens`
//! 128, no stop sequences. Input budget (see [`super::budget`]): 8 192 bytes (≈ 2 048 tokens) for
//! prefix + suffix + IDE context:
//! 1. the suffix keeps its **start**, at most 7 % of the budget (573 bytes);
//! 2. the prefix keeps its **end**, within the rest of the budget (unused suffix bytes go to it);
//! 3. IDE context items (`context[*].content` / `code_context` components), in the order given
//!    (most relevant first), are prepended to the prefix, each followed by `"\n"`, while they
//!    fit in what the prefix left over; an item that does not fit is dropped (later, smaller
//!    items may still fit). Empty items are skipped.
//!
//! Messages: a system message (role, file, rules) and one user message with `<language>`,
//! `<file_name>`, `<prefix>`, `<suffix>` sections followed by the task.

use crate::bedrock::messages::{Message, MessagesRequest};

use super::budget::{keep_end, keep_start, COMPLETION_BUDGET_BYTES, SUFFIX_PERCENT};
use super::{render, trim_end_owned};

/// `max_tokens` of a completion call.
pub const COMPLETION_MAX_TOKENS: u32 = 128;
/// `temperature` of a completion call.
pub const COMPLETION_TEMPERATURE: f64 = 0.0;

const SYSTEM_TEMPLATE: &str = include_str!("templates/completion_system.txt");
const USER_TEMPLATE: &str = include_str!("templates/completion_user.txt");

/// What a completion prompt is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionInput<'a> {
    /// Lower-cased language name, `""` if unknown (see [`super::language_name`]).
    pub language: &'a str,
    pub file_name: &'a str,
    /// Code above the cursor.
    pub prefix: &'a str,
    /// Code below the cursor.
    pub suffix: &'a str,
    /// IDE context contents, most relevant first.
    pub context: Vec<&'a str>,
}

/// How the budget was spent (bytes), for `tokens_consumption_metadata` and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetReport {
    pub prefix_bytes: usize,
    pub suffix_bytes: usize,
    pub context_items_sent: usize,
    pub context_items_used: usize,
    pub context_bytes_sent: usize,
    pub context_bytes_used: usize,
}

/// The Bedrock body and the budget report.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionPrompt {
    pub request: MessagesRequest,
    pub report: BudgetReport,
}

/// The prefix (with context prepended) and suffix after applying the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FittedCode {
    pub prefix: String,
    pub suffix: String,
    pub report: BudgetReport,
}

/// Applies the completion budget to prefix, suffix and context.
pub fn fit_completion(prefix: &str, suffix: &str, context: &[&str]) -> FittedCode {
    let suffix_budget = COMPLETION_BUDGET_BYTES * SUFFIX_PERCENT / 100;
    let suffix = keep_start(suffix, suffix_budget);
    let prefix_budget = COMPLETION_BUDGET_BYTES.saturating_sub(suffix.len());
    let prefix = keep_end(prefix, prefix_budget);
    let mut remaining = prefix_budget.saturating_sub(prefix.len());

    let mut report = BudgetReport {
        prefix_bytes: prefix.len(),
        suffix_bytes: suffix.len(),
        ..BudgetReport::default()
    };
    let mut used = Vec::new();
    for item in context.iter().filter(|c| !c.is_empty()) {
        report.context_items_sent += 1;
        report.context_bytes_sent = report.context_bytes_sent.saturating_add(item.len());
        let cost = item.len().saturating_add(1);
        if cost <= remaining {
            remaining -= cost;
            used.push(*item);
            report.context_items_used += 1;
            report.context_bytes_used += item.len();
        }
    }
    let mut full =
        String::with_capacity(prefix.len() + report.context_bytes_used + report.context_items_used);
    for item in used {
        full.push_str(item);
        full.push('\n');
    }
    full.push_str(prefix);
    FittedCode {
        prefix: full,
        suffix: suffix.to_string(),
        report,
    }
}

/// Builds the Bedrock Messages body of a code completion.
pub fn completion_request(input: &CompletionInput<'_>) -> CompletionPrompt {
    let fitted = fit_completion(input.prefix, input.suffix, &input.context);
    let language_phrase = if input.language.is_empty() {
        "source code".to_string()
    } else {
        format!("{} code", input.language)
    };
    let system = render(
        SYSTEM_TEMPLATE,
        &[
            ("language_phrase", &language_phrase),
            ("file_name", input.file_name),
        ],
    );
    let user = render(
        USER_TEMPLATE,
        &[
            ("language", input.language),
            ("file_name", input.file_name),
            ("prefix", &fitted.prefix),
            ("suffix", &fitted.suffix),
        ],
    );
    let mut request = MessagesRequest::new(
        COMPLETION_MAX_TOKENS,
        vec![Message::user(trim_end_owned(user))],
    );
    request.system = Some(trim_end_owned(system));
    request.temperature = Some(COMPLETION_TEMPERATURE);
    CompletionPrompt {
        request,
        report: fitted.report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(prefix: &'a str, suffix: &'a str, context: Vec<&'a str>) -> CompletionInput<'a> {
        CompletionInput {
            language: "ruby",
            file_name: "app/models/user.rb",
            prefix,
            suffix,
            context,
        }
    }

    #[test]
    fn request_settings_and_sections() {
        let p = completion_request(&input(
            "class User\n  def full_name\n    ",
            "\n  end\nend\n",
            vec![],
        ));
        let r = &p.request;
        assert_eq!(r.max_tokens, 128);
        assert_eq!(r.temperature, Some(0.0));
        assert!(r.stop_sequences.is_empty());
        assert_eq!(r.messages.len(), 1);
        let sys = r.system.as_deref().unwrap();
        assert!(sys.contains("ruby code") && sys.contains("\"app/models/user.rb\""));
        let user = &r.messages[0].content;
        assert!(user.starts_with("<language>ruby</language>\n<file_name>app/models/user.rb</file_name>\n<prefix>\nclass User\n  def full_name\n    \n</prefix>\n<suffix>\n\n  end\nend\n\n</suffix>"), "{user}");
        assert!(!user.ends_with('\n'));
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
        assert!(v.get("stop_sequences").is_none());
    }

    #[test]
    fn empty_inputs() {
        let p = completion_request(&CompletionInput::default());
        let sys = p.request.system.unwrap();
        assert!(sys.contains("source code"), "{sys}");
        assert!(p.request.messages[0]
            .content
            .contains("<prefix>\n\n</prefix>"));
        assert_eq!(p.report, BudgetReport::default());
    }

    #[test]
    fn huge_prefix_keeps_its_end_and_suffix_gets_7_percent() {
        let prefix: String =
            (0..5000).map(|i| format!("line {i}\n")).collect::<String>() + "  cursor_here";
        let suffix: String = (0..5000).map(|i| format!("after {i}\n")).collect();
        let f = fit_completion(&prefix, &suffix, &[]);
        assert!(f.prefix.ends_with("line 4999\n  cursor_here"));
        assert!(f.prefix.starts_with("line "), "cut at a line start");
        assert!(f.suffix.starts_with("after 0\nafter 1\n"));
        assert!(f.suffix.ends_with('\n'));
        assert!(f.suffix.len() <= 573 && f.suffix.len() > 500);
        assert!(f.prefix.len() + f.suffix.len() <= 8192);
        assert!(f.prefix.len() > 8192 - 573 - 20);
    }

    #[test]
    fn short_suffix_leaves_room_for_prefix() {
        let prefix = "x".repeat(10_000);
        let f = fit_completion(&prefix, "}", &[]);
        assert_eq!(f.suffix, "}");
        assert_eq!(f.prefix.len(), 8191);
    }

    #[test]
    fn context_is_prepended_in_order_and_dropped_when_over_budget() {
        let big = "b".repeat(5000);
        let f = fit_completion("def x\n", "", &["first ctx", &big, "", "third"]);
        assert_eq!(f.prefix, format!("first ctx\n{big}\nthird\ndef x\n"));
        assert_eq!(f.report.context_items_sent, 3);
        assert_eq!(f.report.context_items_used, 3);

        let prefix = "p".repeat(6000);
        let f = fit_completion(&prefix, "", &["small one", &big, "tail"]);
        assert_eq!(f.prefix, format!("small one\ntail\n{prefix}"));
        assert_eq!(f.report.context_items_used, 2);
        assert_eq!(f.report.context_bytes_sent, 9 + 5000 + 4);
        assert_eq!(f.report.context_bytes_used, 13);

        // a full prefix leaves no room for any context
        let prefix = "p".repeat(20_000);
        let f = fit_completion(&prefix, "", &["ctx"]);
        assert_eq!(f.report.context_items_used, 0);
        assert!(!f.prefix.contains("ctx"));
        assert_eq!(f.prefix.len(), 8192);
    }

    #[test]
    fn utf8_is_never_split() {
        let prefix = "é😀\n".repeat(4000);
        let suffix = "€".repeat(4000);
        let f = fit_completion(&prefix, &suffix, &["ü".repeat(100).as_str()]);
        assert!(prefix.ends_with(&f.prefix));
        assert!(suffix.starts_with(&f.suffix));
        assert!(f.prefix.len() + f.suffix.len() <= 8192);
    }

    #[test]
    fn prompt_text_with_template_markers_is_literal() {
        let p = completion_request(&input("x = '{{suffix}}'", "{{prefix}}", vec![]));
        let user = &p.request.messages[0].content;
        assert!(user.contains("<prefix>\nx = '{{suffix}}'\n</prefix>"));
        assert!(user.contains("<suffix>\n{{prefix}}\n</suffix>"));
    }
}
