//! One prompt definition file (`src/prompts/definitions/<prompt id>.prompt`): format and parser.
//!
//! Contract: `docs/gitlab-contract.md#named-prompts` (a prompt has an id, a version, unit
//! primitives, model parameters and system/user/assistant templates) and `#chat-prompts` (ReAct
//! settings).
//!
//! Format: a header of `key: value` lines (blank lines and `#` comments allowed), then
//! sections, each introduced by a line of its own:
//!
//! ```text
//! name: Explain code
//! unit_primitive: explain_code        # comma-separated when several are needed
//! version: 1.0.0
//! max_tokens: 2048                    # default 4096
//! temperature: 0.1                    # default 0.0
//! stop: ["Observation:"]              # JSON list of strings; default none
//! timeout_secs: 60                    # default 60 (informative: Envoy's route timeout applies)
//! kind: prompt                        # `prompt` (default) or `agent` (not callable via /v1/prompts)
//! --- system
//! text with {{variables}}
//! --- user
//! ...
//! --- assistant
//! (prefill: the model continues from this text)
//! --- partial <name>
//! a named fragment the Rust code renders itself (e.g. the ReAct tool list)
//! ```
//!
//! `system`, `user` and `assistant` sections become the messages, in file order (several
//! `system` sections are joined). Trailing whitespace of every section is removed; newlines
//! inside are kept. Templates use [`super::template`]. The header's `version` is the one
//! version of this prompt (GitLab's claude_3 prompts all exist in exactly one stable version).

use serde_json::{Map, Value};

use super::template::{self, Missing};
use super::version::Version;

/// How a prompt can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plain prompt: runnable through `/v1/prompts/{id}` and `/v2/prompts/{id}`.
    Prompt,
    /// Used by an agent endpoint (`/v2/chat/agent`); `/v1/prompts` answers 422 "not supported".
    Agent,
}

/// Role of a message section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionRole {
    System,
    User,
    Assistant,
}

/// One message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub role: SectionRole,
    pub template: String,
}

/// A parsed prompt definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub id: String,
    pub name: String,
    pub unit_primitives: Vec<String>,
    /// The version as written in the file.
    pub version_text: String,
    pub version: Version,
    pub kind: Kind,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub stop: Vec<String>,
    pub timeout_secs: u32,
    pub messages: Vec<Section>,
    pub partials: Vec<(String, String)>,
}

/// The messages a definition renders to (before Bedrock role normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub system: Vec<String>,
    /// User and assistant turns, in order.
    pub turns: Vec<(SectionRole, String)>,
}

/// Default `max_tokens` (GitLab's claude_3 family default).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// Default temperature (GitLab's claude_3 family default).
pub const DEFAULT_TEMPERATURE: f64 = 0.0;
/// Default timeout.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;

impl Definition {
    /// Parses a definition; the error says what is wrong (definitions are this project's files,
    /// a unit test parses all of them).
    pub fn parse(id: &str, text: &str) -> Result<Definition, String> {
        let mut def = Definition {
            id: id.to_string(),
            name: String::new(),
            unit_primitives: Vec::new(),
            version_text: String::new(),
            version: Version::parse("0").ok_or("internal: version 0")?,
            kind: Kind::Prompt,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: Some(DEFAULT_TEMPERATURE),
            stop: Vec::new(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            messages: Vec::new(),
            partials: Vec::new(),
        };
        let mut lines = text.lines().enumerate().peekable();
        // header
        while let Some((_, line)) = lines.peek() {
            if section_header(line).is_some() {
                break;
            }
            let (n, line) = lines.next().ok_or("internal: header")?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("{id}:{}: expected `key: value`", n + 1))?;
            let value = strip_comment(value.trim());
            def.set(key.trim(), value)
                .map_err(|e| format!("{id}:{}: {key}: {e}", n + 1))?;
        }
        // sections
        let mut current: Option<(Header, String)> = None;
        for (_, line) in lines {
            if let Some(h) = section_header(line) {
                if let Some((h0, body)) = current.take() {
                    def.push_section(h0, body);
                }
                current = Some((h, String::new()));
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        if let Some((h, body)) = current {
            def.push_section(h, body);
        }
        def.check()?;
        Ok(def)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "name" => self.name = value.to_string(),
            "unit_primitive" | "unit_primitives" => {
                self.unit_primitives = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "version" => {
                self.version = Version::parse(value).ok_or("not a version")?;
                self.version_text = value.to_string();
            }
            "kind" => {
                self.kind = match value {
                    "prompt" => Kind::Prompt,
                    "agent" => Kind::Agent,
                    _ => return Err("expected prompt or agent".into()),
                }
            }
            "max_tokens" => {
                self.max_tokens = value.replace('_', "").parse().map_err(|_| "not a number")?
            }
            "temperature" => {
                self.temperature = if value == "none" {
                    None
                } else {
                    let t: f64 = value.parse().map_err(|_| "not a number")?;
                    if !(0.0..=1.0).contains(&t) {
                        return Err("must be within 0..=1".into());
                    }
                    Some(t)
                }
            }
            "stop" => {
                self.stop = serde_json::from_str(value).map_err(|e| format!("JSON list: {e}"))?
            }
            "timeout_secs" => self.timeout_secs = value.parse().map_err(|_| "not a number")?,
            _ => return Err("unknown key".into()),
        }
        Ok(())
    }

    fn push_section(&mut self, h: Header, body: String) {
        let text = body.trim_end().to_string();
        match h {
            Header::Message(role) => self.messages.push(Section {
                role,
                template: text,
            }),
            Header::Partial(name) => self.partials.push((name, text)),
        }
    }

    fn check(&self) -> Result<(), String> {
        let id = &self.id;
        if self.name.is_empty() {
            return Err(format!("{id}: missing name"));
        }
        if self.unit_primitives.is_empty() {
            return Err(format!("{id}: missing unit_primitive"));
        }
        if self.version_text.is_empty() {
            return Err(format!("{id}: missing version"));
        }
        if self.max_tokens == 0 {
            return Err(format!("{id}: max_tokens must be positive"));
        }
        if self.kind == Kind::Prompt && !self.messages.iter().any(|s| s.role == SectionRole::User) {
            return Err(format!("{id}: a prompt needs a user section"));
        }
        Ok(())
    }

    /// The named partial (`--- partial <name>`).
    pub fn partial(&self, name: &str) -> Option<&str> {
        self.partials
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// Renders every message section with `vars`; the first missing required variable (in
    /// section order) is the error.
    pub fn render(&self, vars: &Map<String, Value>) -> Result<Rendered, Missing> {
        let mut out = Rendered {
            system: Vec::new(),
            turns: Vec::new(),
        };
        for s in &self.messages {
            let text = template::render(&s.template, vars)?;
            match s.role {
                SectionRole::System => out.system.push(text),
                role => out.turns.push((role, text)),
            }
        }
        Ok(out)
    }
}

enum Header {
    Message(SectionRole),
    Partial(String),
}

fn section_header(line: &str) -> Option<Header> {
    let rest = line.trim_end().strip_prefix("--- ")?;
    match rest.trim() {
        "system" => Some(Header::Message(SectionRole::System)),
        "user" => Some(Header::Message(SectionRole::User)),
        "assistant" => Some(Header::Message(SectionRole::Assistant)),
        other => other
            .strip_prefix("partial ")
            .map(|n| Header::Partial(n.trim().to_string())),
    }
}

/// Drops a trailing `  # comment` (a `#` preceded by whitespace) from a header value.
fn strip_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(i) => value.get(..i).unwrap_or(value).trim_end(),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE: &str = "# a comment\nname: Sample\nunit_primitive: a, b\nversion: 1.2.0\n\
        max_tokens: 2_048   # inline comment\ntemperature: 0.1\nstop: [\"Observation:\", \"</x>\"]\n\
        timeout_secs: 30\n\n--- system\nYou are {{who}}.\n\n--- user\n{{question}}\n  \n\
        --- assistant\nThought: \n--- partial tool\n<tool>{{name}}</tool>\n";

    #[test]
    fn parses_header_and_sections() {
        let d = Definition::parse("x/sample", SAMPLE).unwrap();
        assert_eq!(d.name, "Sample");
        assert_eq!(d.unit_primitives, ["a", "b"]);
        assert_eq!(d.version_text, "1.2.0");
        assert_eq!(d.max_tokens, 2048);
        assert_eq!(d.temperature, Some(0.1));
        assert_eq!(d.stop, ["Observation:", "</x>"]);
        assert_eq!(d.timeout_secs, 30);
        assert_eq!(d.kind, Kind::Prompt);
        assert_eq!(d.messages.len(), 3);
        assert_eq!(d.messages[0].template, "You are {{who}}.");
        assert_eq!(d.messages[1].template, "{{question}}");
        assert_eq!(d.messages[2].template, "Thought:");
        assert_eq!(d.partial("tool"), Some("<tool>{{name}}</tool>"));
        let r = d
            .render(
                json!({"who": "a bot", "question": "why?"})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.system, ["You are a bot."]);
        assert_eq!(
            r.turns,
            [
                (SectionRole::User, "why?".to_string()),
                (SectionRole::Assistant, "Thought:".to_string())
            ]
        );
        assert_eq!(
            d.render(json!({"who": "x"}).as_object().unwrap()),
            Err(Missing("question".into()))
        );
    }

    #[test]
    fn rejects_bad_definitions() {
        for (bad, why) in [
            (
                "version: 1.0.0\nunit_primitive: a\n--- user\nx",
                "missing name",
            ),
            (
                "name: n\nversion: 1.0.0\n--- user\nx",
                "missing unit_primitive",
            ),
            ("name: n\nunit_primitive: a\n--- user\nx", "missing version"),
            (
                "name: n\nunit_primitive: a\nversion: 1.0.0\n--- system\nx",
                "user section",
            ),
            (
                "name: n\nunit_primitive: a\nversion: one\n--- user\nx",
                "not a version",
            ),
            (
                "name: n\nunit_primitive: a\nversion: 1\nfoo: 1\n--- user\nx",
                "unknown key",
            ),
            (
                "name: n\nunit_primitive: a\nversion: 1\ntemperature: 3\n--- user\nx",
                "0..=1",
            ),
            (
                "name: n\nunit_primitive: a\nversion: 1\nstop: x\n--- user\nx",
                "JSON",
            ),
            (
                "name: n\nunit_primitive: a\nversion: 1\nkind: z\n--- user\nx",
                "prompt or agent",
            ),
            ("name n\n--- user\nx", "key: value"),
        ] {
            let e = Definition::parse("t", bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let agent = Definition::parse("t", "name: n\nunit_primitive: a\nversion: 1\nkind: agent\n")
            .unwrap();
        assert_eq!(agent.kind, Kind::Agent);
    }
}
