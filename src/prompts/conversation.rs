//! Turns a list of role-tagged texts into a Bedrock Messages conversation Bedrock accepts.
//!
//! Contract: `docs/bedrock-contract.md#messages-body` (Anthropic Messages on Bedrock): `system` is
//! a top-level field; `messages` must start with a `user` turn and alternate `user`/`assistant`;
//! text blocks must not be empty or whitespace-only; a final `assistant` turn (a prefill the model
//! continues) must not end with whitespace. GitLab's gateway leaves this to LiteLLM; here it is
//! explicit.
//!
//! Rules, in order:
//! 1. system texts (blank ones dropped) are joined with a blank line into `system`;
//! 2. turns whose text is blank are dropped;
//! 3. consecutive turns of the same role are merged, joined with a blank line;
//! 4. when the first turn is an assistant turn, a user turn [`CONTINUE_PLACEHOLDER`] is put
//!    before it; when there is no turn at all, the conversation is that single user turn;
//! 5. a final assistant turn loses its trailing whitespace.

use crate::bedrock::messages::{Message, Role};

/// The user text used where Bedrock needs a user turn and GitLab sent none.
pub const CONTINUE_PLACEHOLDER: &str = "Continue.";

/// `(system, messages)` following the module rules.
pub fn build(system: &[String], turns: Vec<(Role, String)>) -> (Option<String>, Vec<Message>) {
    let system_parts: Vec<&str> = system
        .iter()
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
        .collect();
    let system = (!system_parts.is_empty()).then(|| system_parts.join("\n\n"));

    let mut messages: Vec<Message> = Vec::with_capacity(turns.len() + 1);
    for (role, text) in turns {
        if text.trim().is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&text);
            }
            _ => messages.push(Message {
                role,
                content: text,
            }),
        }
    }
    if messages.first().is_none_or(|m| m.role == Role::Assistant) {
        messages.insert(0, Message::user(CONTINUE_PLACEHOLDER));
    }
    if let Some(last) = messages.last_mut() {
        if last.role == Role::Assistant {
            let trimmed = last.content.trim_end().len();
            last.content.truncate(trimmed);
        }
    }
    (system, messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(role: Role, s: &str) -> (Role, String) {
        (role, s.to_string())
    }

    #[test]
    fn alternation_and_merging() {
        let (system, m) = build(
            &["  ".into(), "a".into(), "b".into()],
            vec![
                t(Role::User, "u1"),
                t(Role::User, "u2"),
                t(Role::Assistant, " \n"),
                t(Role::User, "u3"),
                t(Role::Assistant, "a1"),
                t(Role::Assistant, "Thought: \n"),
            ],
        );
        assert_eq!(system.as_deref(), Some("a\n\nb"));
        assert_eq!(
            m,
            vec![
                Message::user("u1\n\nu2\n\nu3"),
                Message::assistant("a1\n\nThought:"),
            ]
        );
    }

    #[test]
    fn leading_assistant_and_empty() {
        let (system, m) = build(&[], vec![t(Role::Assistant, "hi")]);
        assert_eq!(system, None);
        assert_eq!(
            m,
            vec![
                Message::user(CONTINUE_PLACEHOLDER),
                Message::assistant("hi")
            ]
        );
        let (_, m) = build(&["sys".into()], vec![]);
        assert_eq!(m, vec![Message::user(CONTINUE_PLACEHOLDER)]);
        let (_, m) = build(&[], vec![t(Role::User, "   ")]);
        assert_eq!(m, vec![Message::user(CONTINUE_PLACEHOLDER)]);
    }
}
