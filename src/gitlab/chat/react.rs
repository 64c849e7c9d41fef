//! The ReAct output parser of `/v2/chat/agent` and the NDJSON responder built on it.
//!
//! Contract: `docs/gitlab-contract.md#chat-agent` and GitLab's `ReActPlainTextParser` /
//! `ReActAgent.astream` (AIGW 18.5 `ai_gateway/chat/agents/react.py`). The model continues the
//! prefill `Thought:`, so its text looks like
//! ` <thought>\nAction: <tool>\nAction Input: <input>` (Bedrock stops before `Observation:`) or
//! ` <thought>\nAction: DirectAnswer\nFinal Answer: <answer>`.
//!
//! Semantics reproduced (the gateway re-parses the whole text after every chunk):
//! * **Final answer**: the text after the first `Final Answer:`, leading whitespace skipped and
//!   trailing whitespace held back (the gateway strips it), is streamed as
//!   `final_answer_delta` events as soon as it arrives; a chunk boundary anywhere, including
//!   inside `Final Answer:` or a multi-byte character's neighbours, changes nothing. Once a
//!   final answer started, nothing else is sent (no action, no unknown).
//! * **Action**, decided at the end of the stream on `<message>Thought: {text.strip()}</message>`
//!   exactly like the gateway's regular expressions: tool = between the first `Action:` and the
//!   next `Action` (trimmed), input = after the first `Action Input:` up to `</message>`
//!   (trimmed), thought = after `Thought:` up to the first `Action:` / `Final Answer:`
//!   (trimmed); `\_` becomes `_` in tool and thought, `MergeRequestReader` becomes
//!   `merge_request_reader`. A tool that is not in the tool list gives the gateway's
//!   `error` event `tool not available`.
//! * **Unknown**: otherwise, one `unknown` event with the whole stripped text.
//! * **Errors** mid-stream ([`AgentResponder::stream_error`]): one `error` event, then nothing.
//!   `retryable` is true only when the message mentions `overloaded` (the gateway's rule for
//!   `overloaded_error`). The message is Bedrock's, without control characters, at most 500
//!   characters.
//!
//! Whitespace is Rust's `char::is_whitespace` (Python's `\s` also counts `\x1c`–`\x1f`).

use crate::bedrock::messages::{MessagesResponse, Usage};
use crate::prompts::react::is_tool;

use super::super::dispatch::Responder;
use super::super::errors::sanitize;
use super::super::response::GitlabResponse;
use super::events::{litellm_finish_reason, AgentEvent};

/// Content type of the agent stream.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson; charset=utf-8";

const FINAL_ANSWER: &str = "Final Answer:";
/// Longest error message forwarded.
const MAX_ERROR_CHARS: usize = 500;

/// Incremental ReAct parser: feed text deltas with [`Self::push`], then call [`Self::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReactParser {
    text: String,
    /// Bytes of `text` already searched for `Final Answer:` (minus a marker-length overlap).
    scanned: usize,
    /// Byte offset right after `Final Answer:`.
    marker_end: Option<usize>,
    /// Byte offset of the first non-whitespace character of the answer.
    answer_start: Option<usize>,
    /// Answer bytes already emitted end here.
    emitted_to: usize,
    /// Bytes of `text` after `Final Answer:` already known to be whitespace (before the answer
    /// starts), so the search for its first character never rescans them.
    blank_to: usize,
    /// Byte offset right after the last non-whitespace character of `text` (what the gateway's
    /// strip keeps), kept up to date from each delta alone.
    content_end: usize,
}

impl ReactParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// All text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a final answer was found.
    pub fn has_final_answer(&self) -> bool {
        self.marker_end.is_some()
    }

    /// Adds a delta; returns the final-answer delta it released (at most one event).
    ///
    /// Linear in the length of the stream: each byte is searched for the marker, for the
    /// answer's first character and for trailing whitespace at most once (plus a marker-length
    /// overlap), however the model splits or pads its output.
    pub fn push(&mut self, delta: &str) -> Vec<AgentEvent> {
        let start = self.text.len();
        self.text.push_str(delta);
        if let Some((i, c)) = delta.char_indices().rev().find(|(_, c)| !c.is_whitespace()) {
            self.content_end = start + i + c.len_utf8();
        }
        if self.marker_end.is_none() {
            let mut from = self.scanned.saturating_sub(FINAL_ANSWER.len() - 1);
            while from > 0 && !self.text.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(i) = self.text.get(from..).and_then(|t| t.find(FINAL_ANSWER)) {
                self.marker_end = Some(from + i + FINAL_ANSWER.len());
            }
            self.scanned = self.text.len();
        }
        let Some(marker_end) = self.marker_end else {
            return Vec::new();
        };
        if self.answer_start.is_none() {
            let from = self.blank_to.max(marker_end);
            let rest = self.text.get(from..).unwrap_or("");
            match rest.char_indices().find(|(_, c)| !c.is_whitespace()) {
                Some((i, _)) => {
                    self.answer_start = Some(from + i);
                    self.emitted_to = from + i;
                }
                None => {
                    self.blank_to = self.text.len();
                    return Vec::new();
                }
            }
        }
        let end = self.content_end;
        if end <= self.emitted_to {
            return Vec::new();
        }
        let piece = self
            .text
            .get(self.emitted_to..end)
            .unwrap_or("")
            .to_string();
        self.emitted_to = end;
        if piece.is_empty() {
            Vec::new()
        } else {
            vec![AgentEvent::FinalAnswerDelta { text: piece }]
        }
    }

    /// The events due at the end of the model output (none when a final answer was found).
    pub fn finish(&self) -> Vec<AgentEvent> {
        if self.marker_end.is_some() {
            return Vec::new();
        }
        let stripped = self.text.trim();
        match parse_action(stripped) {
            Some((tool, tool_input, thought)) => {
                if is_tool(&tool) {
                    vec![AgentEvent::Action {
                        tool,
                        tool_input,
                        thought,
                    }]
                } else {
                    vec![AgentEvent::Error {
                        message: "tool not available".into(),
                        retryable: false,
                    }]
                }
            }
            None => vec![AgentEvent::Unknown {
                text: stripped.to_string(),
            }],
        }
    }
}

/// Index of the first non-whitespace character of `s` at or after `from`.
fn skip_ws(s: &str, from: usize) -> usize {
    s.get(from..)
        .and_then(|r| r.char_indices().find(|(_, c)| !c.is_whitespace()))
        .map_or(s.len(), |(i, _)| from + i)
}

/// `marker\s*([\s\S]*?)\s*<end>` where `<end>` is the earliest of `ends`: the trimmed group.
fn capture<'s>(s: &'s str, marker: &str, ends: &[&str]) -> Option<&'s str> {
    let i = s.find(marker)?;
    let p = skip_ws(s, i + marker.len());
    let rest = s.get(p..)?;
    let a = ends.iter().filter_map(|e| rest.find(e)).min()?;
    rest.get(..a).map(str::trim_end)
}

/// `(tool, tool_input, thought)` when the text is a tool action (see the module doc).
fn parse_action(stripped: &str) -> Option<(String, String, String)> {
    let wrapped = format!("<message>Thought: {stripped}</message>");
    let tool = capture(&wrapped, "Action:", &["Action"])?;
    let tool_input = capture(&wrapped, "Action Input:", &["</message>"])?;
    let thought = capture(&wrapped, "<message>Thought:", &["Action:", FINAL_ANSWER]).unwrap_or("");
    let tool = if tool == "MergeRequestReader" {
        "merge_request_reader".to_string()
    } else {
        tool.replace("\\_", "_")
    };
    Some((tool, tool_input.to_string(), thought.replace("\\_", "_")))
}

/// Bedrock's error text, safe to show: no control characters, bounded.
fn clean_message(message: &str) -> String {
    let out = sanitize(message, MAX_ERROR_CHARS);
    if out.is_empty() {
        "The model stream failed".to_string()
    } else {
        out
    }
}

fn lines(events: &[AgentEvent]) -> Vec<u8> {
    // A streamed `final_answer_delta` line is about 80 bytes plus its text.
    let mut out = String::with_capacity(events.len() * 128);
    for e in events {
        e.push_line(&mut out);
    }
    out.into_bytes()
}

/// The `/v2/chat/agent` responder: NDJSON events from the model's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentResponder {
    parser: ReactParser,
    usage: Usage,
    ended: bool,
    /// A final-answer delta was sent; then the answer ends with its `finish_reason`.
    answered: bool,
    stop_reason: Option<String>,
}

impl AgentResponder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Usage recorded from the stream (for logs).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Lines for model output, noting whether a final answer started.
    fn lines_of(&mut self, events: Vec<AgentEvent>) -> Vec<u8> {
        self.answered |= events
            .iter()
            .any(|e| matches!(e, AgentEvent::FinalAnswerDelta { .. }));
        lines(&events)
    }

    /// The end of the output: the parser's last events, then (ai-gateway `main`) one empty
    /// `final_answer_delta` with the finish reason when an answer was streamed.
    fn end_lines(&mut self) -> Vec<u8> {
        let mut events = self.parser.finish();
        if let (true, Some(stop)) = (self.answered, self.stop_reason.as_deref()) {
            events.push(AgentEvent::FinalAnswerFinish {
                finish_reason: litellm_finish_reason(stop).to_string(),
            });
        }
        lines(&events)
    }
}

impl Responder for AgentResponder {
    fn complete(&mut self, resp: &MessagesResponse) -> GitlabResponse {
        let events = self.parser.push(&resp.text());
        let mut body = self.lines_of(events);
        self.stop_reason.clone_from(&resp.stop_reason);
        body.extend(self.end_lines());
        self.ended = true;
        GitlabResponse {
            status: 200,
            headers: vec![("content-type".to_string(), NDJSON_CONTENT_TYPE.to_string())],
            body,
        }
    }

    fn stream_headers(&self) -> Vec<(String, String)> {
        vec![("content-type".to_string(), NDJSON_CONTENT_TYPE.to_string())]
    }

    fn stream_text(&mut self, delta: &str) -> Vec<u8> {
        if self.ended || delta.is_empty() {
            return Vec::new();
        }
        let events = self.parser.push(delta);
        self.lines_of(events)
    }

    fn stream_end(&mut self) -> Vec<u8> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        self.end_lines()
    }

    fn stream_error(&mut self, message: &str) -> Vec<u8> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        let retryable = message.to_ascii_lowercase().contains("overloaded");
        lines(&[AgentEvent::Error {
            message: clean_message(message),
            retryable,
        }])
    }

    fn record_usage(&mut self, input: Option<u64>, output: Option<u64>) {
        if let Some(i) = input {
            self.usage.input_tokens = i;
        }
        if let Some(o) = output {
            self.usage.output_tokens = o;
        }
    }

    fn record_stop_reason(&mut self, stop_reason: &str) {
        self.stop_reason = Some(stop_reason.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Feeds `parts` and returns (concatenated final answer, other events in order).
    fn feed(parts: &[&str]) -> (String, Vec<AgentEvent>) {
        let mut p = ReactParser::new();
        let mut answer = String::new();
        let mut others = Vec::new();
        for part in parts {
            for e in p.push(part) {
                match e {
                    AgentEvent::FinalAnswerDelta { text } => {
                        assert!(!text.is_empty());
                        answer.push_str(&text);
                    }
                    other => others.push(other),
                }
            }
        }
        for e in p.finish() {
            match e {
                AgentEvent::FinalAnswerDelta { .. } => panic!("delta at finish"),
                other => others.push(other),
            }
        }
        (answer, others)
    }

    fn boundaries(s: &str) -> Vec<usize> {
        (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
    }

    /// Checks `text` gives the same result fed whole, split at every point, split at every pair
    /// of points (short texts), and char by char.
    fn check_all_splits(text: &str, expected: &(String, Vec<AgentEvent>)) {
        assert_eq!(&feed(&[text]), expected, "whole: {text:?}");
        let b = boundaries(text);
        for &i in &b {
            let parts = [&text[..i], &text[i..]];
            assert_eq!(&feed(&parts), expected, "split at {i}: {text:?}");
        }
        if text.len() <= 160 {
            for &i in &b {
                for &j in b.iter().filter(|&&j| j >= i) {
                    let parts = [&text[..i], &text[i..j], &text[j..]];
                    assert_eq!(&feed(&parts), expected, "split at {i},{j}");
                }
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(&feed(&parts), expected, "char by char: {text:?}");
    }

    fn action(tool: &str, input: &str, thought: &str) -> AgentEvent {
        AgentEvent::Action {
            tool: tool.into(),
            tool_input: input.into(),
            thought: thought.into(),
        }
    }

    #[test]
    fn thought_and_action() {
        let text = " I should search the docs.\nAction: gitlab_documentation\nAction Input: revert a commit\n";
        check_all_splits(
            text,
            &(
                String::new(),
                vec![action(
                    "gitlab_documentation",
                    "revert a commit",
                    "I should search the docs.",
                )],
            ),
        );
    }

    #[test]
    fn final_answer() {
        let text = " I know this.\nAction: DirectAnswer\nFinal Answer: Use `git revert <sha>`.\n\nIt adds a new commit — safe for shared branches 😀.\n\n";
        check_all_splits(
            text,
            &(
                "Use `git revert <sha>`.\n\nIt adds a new commit — safe for shared branches 😀."
                    .into(),
                vec![],
            ),
        );
    }

    #[test]
    fn leading_whitespace_and_text_before_thought() {
        check_all_splits(
            "\n\n  Thought: dup\nFinal Answer:   Hi there  \n",
            &("Hi there".into(), vec![]),
        );
        check_all_splits(
            "Sure, let me look.\nThought: the user is on an issue\nAction: issue_reader\nAction Input: current issue",
            &(
                String::new(),
                vec![action(
                    "issue_reader",
                    "current issue",
                    "Sure, let me look.\nThought: the user is on an issue",
                )],
            ),
        );
    }

    #[test]
    fn final_answer_wins_over_an_earlier_action() {
        check_all_splits(
            "x\nAction: issue_reader\nAction Input: #1\nFinal Answer: done",
            &("done".into(), vec![]),
        );
        // a second "Final Answer:" is part of the answer
        check_all_splits(
            "Final Answer: a Final Answer: b",
            &("a Final Answer: b".into(), vec![]),
        );
        // an empty final answer sends nothing at all
        check_all_splits("ok\nFinal Answer:   \n", &(String::new(), vec![]));
        // Whitespace padding after the marker and after the answer, one small delta at a time:
        // the same answer as in one piece. (Was quadratic: every delta rescanned the padding.)
        let mut p = ReactParser::new();
        let mut answer = String::new();
        let mut push = |p: &mut ReactParser, d: &str| {
            for e in p.push(d) {
                if let AgentEvent::FinalAnswerDelta { text } = e {
                    answer.push_str(&text);
                }
            }
        };
        push(&mut p, "x\nFinal Answer:");
        for _ in 0..65_536 {
            push(&mut p, "                ");
        }
        push(&mut p, "Hi");
        for _ in 0..65_536 {
            push(&mut p, " \n \t            ");
        }
        push(&mut p, "there");
        assert_eq!(
            answer,
            format!("Hi{}there", " \n \t            ".repeat(65_536))
        );
    }

    #[test]
    fn unknown_output() {
        check_all_splits(
            "  I am not sure what to do.\n",
            &(
                String::new(),
                vec![AgentEvent::Unknown {
                    text: "I am not sure what to do.".into(),
                }],
            ),
        );
        // Action without Action Input is unknown too
        check_all_splits(
            "t\nAction: issue_reader\n",
            &(
                String::new(),
                vec![AgentEvent::Unknown {
                    text: "t\nAction: issue_reader".into(),
                }],
            ),
        );
        assert_eq!(
            feed(&[]),
            (String::new(), vec![AgentEvent::Unknown { text: "".into() }])
        );
    }

    #[test]
    fn tool_names_are_normalised_or_refused() {
        check_all_splits(
            "t\nAction: MergeRequestReader\nAction Input: !12",
            &(
                String::new(),
                vec![action("merge_request_reader", "!12", "t")],
            ),
        );
        check_all_splits(
            "use\\_it\nAction: work\\_item\\_reader\nAction Input: x\\_y",
            &(
                String::new(),
                vec![action("work_item_reader", "x\\_y", "use_it")],
            ),
        );
        let refused = (
            String::new(),
            vec![AgentEvent::Error {
                message: "tool not available".into(),
                retryable: false,
            }],
        );
        check_all_splits("t\nAction: delete_project\nAction Input: all", &refused);
        check_all_splits("t\nAction: Action Input: x", &refused);
    }

    #[test]
    fn deltas_are_released_early_except_trailing_whitespace() {
        let mut p = ReactParser::new();
        assert!(p.push("Thought: easy\nFinal Ans").is_empty());
        assert!(p.push("wer:").is_empty());
        assert!(p.push("  ").is_empty());
        assert_eq!(
            p.push("Hel"),
            vec![AgentEvent::FinalAnswerDelta { text: "Hel".into() }]
        );
        assert_eq!(
            p.push("lo \n"),
            vec![AgentEvent::FinalAnswerDelta { text: "lo".into() }]
        );
        assert_eq!(
            p.push("world"),
            vec![AgentEvent::FinalAnswerDelta {
                text: " \nworld".into()
            }]
        );
        assert!(p.has_final_answer());
        assert!(p.finish().is_empty());
    }

    #[test]
    fn responder_stream() {
        let mut r = AgentResponder::new();
        assert_eq!(
            r.stream_headers(),
            vec![(
                "content-type".to_string(),
                "application/x-ndjson; charset=utf-8".to_string()
            )]
        );
        let mut out = r.stream_start();
        for d in [" ok\nFinal", " Answer: You can ", "use `git revert`."] {
            out.extend(r.stream_text(d));
        }
        r.record_usage(Some(10), Some(5));
        out.extend(r.stream_end());
        out.extend(r.stream_end());
        out.extend(r.stream_text("late"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"You can\", \"finish_reason\": null}}\n\
             {\"type\": \"final_answer_delta\", \"data\": {\"text\": \" use `git revert`.\", \"finish_reason\": null}}\n"
        );
        assert_eq!(r.usage().output_tokens, 5);

        let mut r = AgentResponder::new();
        let mut out = r.stream_text(" t\nAction: issue_reader\nAction Input: #1");
        out.extend(r.stream_end());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\": \"action\", \"data\": {\"tool\": \"issue_reader\", \"tool_input\": \"#1\", \"thought\": \"t\"}}\n"
        );
    }

    #[test]
    fn error_event() {
        let mut r = AgentResponder::new();
        let mut out = r.stream_text("Final Answer: par");
        out.extend(r.stream_error("ModelStreamError:\n internal failure"));
        out.extend(r.stream_end());
        out.extend(r.stream_error("again"));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "data": {"message": "ModelStreamError: internal failure", "retryable": false}})
        );
        let mut r = AgentResponder::new();
        let line = String::from_utf8(r.stream_error("Anthropic overloaded_error")).unwrap();
        assert!(line.contains("\"retryable\": true"));
        let mut r = AgentResponder::new();
        let line = String::from_utf8(r.stream_error(&"x".repeat(2000))).unwrap();
        assert!(line.len() < 700);
        let mut r = AgentResponder::new();
        let line = String::from_utf8(r.stream_error("\n")).unwrap();
        assert!(line.contains("The model stream failed"));
    }

    #[test]
    fn complete_gives_the_same_lines() {
        let resp: MessagesResponse = serde_json::from_value(json!({
            "content": [{"type": "text", "text": " sure\nFinal Answer: Hi"}],
            "usage": {"input_tokens": 1, "output_tokens": 1}
        }))
        .unwrap();
        let r = AgentResponder::new().complete(&resp);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(NDJSON_CONTENT_TYPE));
        assert_eq!(
            r.body,
            b"{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"Hi\", \"finish_reason\": null}}\n"
        );
    }

    #[test]
    fn an_answer_ends_with_its_finish_reason() {
        let mut r = AgentResponder::new();
        let mut out = r.stream_text(" ok\nFinal Answer: Done. ");
        r.record_stop_reason("end_turn");
        out.extend(r.stream_end());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"Done.\", \"finish_reason\": null}}\n\
             {\"type\": \"final_answer_delta\", \"data\": {\"text\": \"\", \"finish_reason\": \"stop\"}}\n"
        );
        // an action, an empty answer or no stop reason: nothing more
        for (text, stop) in [
            (
                " t\nAction: issue_reader\nAction Input: #1",
                Some("stop_sequence"),
            ),
            (" t\nFinal Answer:  ", Some("end_turn")),
            (" t\nFinal Answer: x", None),
        ] {
            let mut r = AgentResponder::new();
            r.stream_text(text);
            if let Some(stop) = stop {
                r.record_stop_reason(stop);
            }
            let end = String::from_utf8(r.stream_end()).unwrap();
            assert!(!end.contains("finish_reason"), "{text:?}: {end}");
        }
        // non-stream answers too
        let resp: MessagesResponse = serde_json::from_value(json!({
            "content": [{"type": "text", "text": " sure\nFinal Answer: Hi"}],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 1, "output_tokens": 1}
        }))
        .unwrap();
        let body = String::from_utf8(AgentResponder::new().complete(&resp).body).unwrap();
        assert!(
            body.ends_with("{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"\", \"finish_reason\": \"length\"}}\n"),
            "{body}"
        );
    }
}
