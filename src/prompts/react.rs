//! The Duo Chat ReAct prompt (`chat/react`): typed chat history → Bedrock Messages body.
//!
//! Contract: `docs/gitlab-contract.md#chat-agent` (request fields) and `#chat-prompts` (ReAct
//! settings: stop at `Observation:`, temperature 0, 4096 tokens). Structure, as GitLab's gateway
//! builds it:
//! * system: role, rules, the tool list, the answer formats, reachable and unavailable
//!   resources, `current_date` (`%A, %B, %d, %Y`);
//! * one user turn per user message: page context, current file, additional context, then
//!   the question;
//! * one assistant turn per earlier answer (assistant messages with `content`; those without
//!   `content` carry the running scratchpad and are skipped), prefixed by the observations of
//!   their steps and `Final Answer:` when they have steps;
//! * a final assistant prefill: the scratchpad steps (`Thought/Action/Action Input/Observation`)
//!   followed by `Thought:`, so the model continues the ReAct loop.
//!
//! All wording is in `definitions/chat/react.prompt` (sections and partials). Differences from
//! GitLab's gateway, on purpose: scratchpad steps are separated by newlines (the gateway's
//! template glues one step's observation to the next `Thought:`), and the tool list is the full
//! list (the gateway filters tools by the token's scopes, which this host-independent code does
//! not see; GitLab Rails checks permissions again when it runs a tool).

use serde_json::{Map, Value};

use crate::bedrock::messages::{MessagesRequest, Role};

use super::conversation;
use super::definition::{Definition, SectionRole};
use super::registry;
use super::template::{self, render_str};

/// The prompt id.
pub const PROMPT_ID: &str = "chat/react";

/// A tool the agent may call (GitLab Rails runs it and sends back the observation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    /// How the resource is called in "GitLab resources you can reach".
    pub resource: &'static str,
    /// The unit primitive a token needs for the tool to be offered
    /// (docs/gitlab-contract.md#named-prompts).
    pub unit_primitive: &'static str,
}

/// The tools of GitLab's Duo Chat (`DuoChatToolsRegistry`), in the gateway's order.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "build_reader",
        resource: "builds",
        unit_primitive: "ask_build",
    },
    Tool {
        name: "epic_reader",
        resource: "epics",
        unit_primitive: "ask_epic",
    },
    Tool {
        name: "issue_reader",
        resource: "issues",
        unit_primitive: "ask_issue",
    },
    Tool {
        name: "merge_request_reader",
        resource: "merge requests",
        unit_primitive: "ask_merge_request",
    },
    Tool {
        name: "commit_reader",
        resource: "commits",
        unit_primitive: "duo_chat",
    },
    Tool {
        name: "work_item_reader",
        resource: "work items",
        unit_primitive: "ask_work_item",
    },
    Tool {
        name: "gitlab_documentation",
        resource: "documentation answers",
        unit_primitive: "documentation_search",
    },
];

/// The page the user is on (`messages[].context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageContext {
    /// `issue`, `epic`, `merge_request`, `commit`, `build` or `work_item`.
    pub kind: String,
    pub title: Option<String>,
    /// Deprecated (GitLab < 17.9): Rails-rendered description of the page.
    pub content: Option<String>,
}

/// The file open in the editor (`messages[].current_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentFile {
    pub file_path: String,
    pub data: String,
    pub selected_code: bool,
}

/// One `messages[].additional_context[]` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalContext {
    pub category: String,
    pub id: Option<String>,
    pub content: Option<String>,
}

/// One ReAct step already taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub thought: String,
    pub tool: String,
    pub tool_input: String,
    pub observation: String,
}

/// One message of the chat history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    User {
        content: String,
        page: Option<PageContext>,
        current_file: Option<CurrentFile>,
        additional_context: Vec<AdditionalContext>,
    },
    /// An earlier answer (`content`), with the steps that led to it.
    Assistant { content: String, steps: Vec<Step> },
}

/// Everything the ReAct prompt is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactInput {
    pub turns: Vec<Turn>,
    /// Steps of the current question (the prefill).
    pub scratchpad: Vec<Step>,
    pub unavailable_resources: Vec<String>,
    /// Already formatted (see [`super::date::Date::chat_format`]).
    pub current_date: String,
    /// The token's unit primitives: only tools it may use are offered, as the gateway does.
    /// `None` (authentication bypassed) offers every tool.
    pub scopes: Option<Vec<String>>,
}

impl ReactInput {
    /// The tools this request may use, in the registry's order.
    pub fn tools(&self) -> impl Iterator<Item = &'static Tool> + '_ {
        TOOLS.iter().filter(move |t| {
            self.scopes
                .as_ref()
                .is_none_or(|s| s.iter().any(|up| up == t.unit_primitive))
        })
    }
}

/// Why the prompt could not be built (GitLab's gateway fails the stream with these texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactError {
    /// No user message to answer last: "Last message must be a human message".
    LastMessageNotHuman,
    /// The `chat/react` definition is missing or broken (a build defect).
    Definition(String),
}

/// The tool names, comma-separated.
pub fn tool_names() -> String {
    TOOLS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

/// Whether `name` is one of [`TOOLS`].
pub fn is_tool(name: &str) -> bool {
    TOOLS.iter().any(|t| t.name == name)
}

fn partial<'d>(def: &'d Definition, name: &str) -> Result<&'d str, ReactError> {
    def.partial(name)
        .ok_or_else(|| ReactError::Definition(format!("{PROMPT_ID}: missing partial {name}")))
}

fn fill(def: &Definition, name: &str, vars: &[(&str, &str)]) -> Result<String, ReactError> {
    render_str(partial(def, name)?, vars)
        .map_err(|m| ReactError::Definition(format!("{PROMPT_ID}: {name} needs {}", m.0)))
}

/// How a page type is named in the prompt, with its article.
fn page_label(kind: &str) -> String {
    match kind {
        "issue" => "an issue".to_string(),
        "epic" => "an epic".to_string(),
        "merge_request" => "a merge request".to_string(),
        "work_item" => "a work item".to_string(),
        "build" => "a CI/CD build".to_string(),
        other => format!("a {}", other.replace('_', " ")),
    }
}

fn render_page(def: &Definition, page: &PageContext) -> Result<String, ReactError> {
    let label = page_label(&page.kind);
    if let Some(content) = &page.content {
        return fill(
            def,
            "page_context_content",
            &[("type", &page.kind), ("content", content)],
        );
    }
    match &page.title {
        Some(title) => fill(
            def,
            "page_context_title",
            &[("type", &page.kind), ("label", &label), ("title", title)],
        ),
        None => fill(
            def,
            "page_context_untitled",
            &[("type", &page.kind), ("label", &label)],
        ),
    }
}

fn render_file(def: &Definition, f: &CurrentFile) -> Result<String, ReactError> {
    let name = if f.selected_code {
        "current_file_selected"
    } else {
        "current_file_whole"
    };
    fill(def, name, &[("file_path", &f.file_path), ("data", &f.data)])
}

fn render_additional(def: &Definition, items: &[AdditionalContext]) -> Result<String, ReactError> {
    if items.is_empty() {
        return Ok(String::new());
    }
    let mut out = fill(def, "additional_context_intro", &[])?;
    for item in items {
        let mut vars = vec![("category", item.category.as_str())];
        if let Some(id) = &item.id {
            vars.push(("id", id));
        }
        if let Some(content) = &item.content {
            vars.push(("content", content));
        }
        out.push('\n');
        out.push_str(&fill(def, "additional_context_item", &vars)?);
    }
    Ok(out)
}

fn render_steps(def: &Definition, steps: &[Step]) -> Result<String, ReactError> {
    let mut out = String::new();
    for s in steps {
        out.push_str(&fill(
            def,
            "scratchpad_step",
            &[
                ("thought", &s.thought),
                ("tool", &s.tool),
                ("tool_input", &s.tool_input),
                ("observation", &s.observation),
            ],
        )?);
        out.push('\n');
    }
    Ok(out)
}

fn render_answer(def: &Definition, content: &str, steps: &[Step]) -> Result<String, ReactError> {
    let observations = steps
        .iter()
        .map(|s| {
            fill(
                def,
                "answer_observation",
                &[("observation", &s.observation)],
            )
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("\n");
    fill(
        def,
        "answer",
        &[("observations", &observations), ("answer", content)],
    )
}

fn section(def: &Definition, role: SectionRole) -> Result<&str, ReactError> {
    def.messages
        .iter()
        .find(|s| s.role == role)
        .map(|s| s.template.as_str())
        .ok_or_else(|| ReactError::Definition(format!("{PROMPT_ID}: missing {role:?} section")))
}

fn render_section(
    def: &Definition,
    role: SectionRole,
    vars: &Map<String, Value>,
) -> Result<String, ReactError> {
    template::render(section(def, role)?, vars)
        .map_err(|m| ReactError::Definition(format!("{PROMPT_ID}: {role:?} needs {}", m.0)))
}

fn string_vars(vars: &[(&str, String)]) -> Map<String, Value> {
    vars.iter()
        .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
        .collect()
}

/// Builds the Bedrock body of one ReAct step.
pub fn react_request(input: &ReactInput) -> Result<MessagesRequest, ReactError> {
    let def = registry::lookup(PROMPT_ID, None)
        .map_err(|e| ReactError::Definition(format!("{PROMPT_ID}: {e:?}")))?;

    let mut tools = String::new();
    for t in input.tools() {
        if !tools.is_empty() {
            tools.push('\n');
        }
        tools.push_str(partial(def, &format!("tool_{}", t.name))?);
    }
    let resources = input
        .tools()
        .map(|t| t.resource)
        .collect::<Vec<_>>()
        .join(", ");
    let system = render_section(
        def,
        SectionRole::System,
        &string_vars(&[
            ("current_date", input.current_date.clone()),
            ("tools", tools),
            (
                "tool_names",
                input.tools().map(|t| t.name).collect::<Vec<_>>().join(", "),
            ),
            ("resources", resources),
            (
                "unavailable_resources",
                input.unavailable_resources.join(", "),
            ),
        ]),
    )?;

    let mut turns: Vec<(Role, String)> = Vec::with_capacity(input.turns.len() + 1);
    for turn in &input.turns {
        match turn {
            Turn::User {
                content,
                page,
                current_file,
                additional_context,
            } => {
                let page = page.as_ref().map(|p| render_page(def, p)).transpose()?;
                let file = current_file
                    .as_ref()
                    .map(|f| render_file(def, f))
                    .transpose()?;
                let text = render_section(
                    def,
                    SectionRole::User,
                    &string_vars(&[
                        ("page_context", page.unwrap_or_default()),
                        ("current_file", file.unwrap_or_default()),
                        (
                            "additional_context",
                            render_additional(def, additional_context)?,
                        ),
                        ("content", content.clone()),
                    ]),
                )?;
                turns.push((Role::User, text));
            }
            Turn::Assistant { content, steps } => {
                turns.push((Role::Assistant, render_answer(def, content, steps)?));
            }
        }
    }
    if !matches!(input.turns.last(), Some(Turn::User { .. })) {
        return Err(ReactError::LastMessageNotHuman);
    }
    let prefill = render_section(
        def,
        SectionRole::Assistant,
        &string_vars(&[("scratchpad", render_steps(def, &input.scratchpad)?)]),
    )?;
    turns.push((Role::Assistant, prefill));

    let (system, messages) = conversation::build(&[system], turns);
    let mut req = MessagesRequest::new(def.max_tokens, messages);
    req.system = system;
    req.temperature = def.temperature;
    req.stop_sequences = def.stop.clone();
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(content: &str) -> Turn {
        Turn::User {
            content: content.into(),
            page: None,
            current_file: None,
            additional_context: Vec::new(),
        }
    }

    fn input(turns: Vec<Turn>) -> ReactInput {
        ReactInput {
            turns,
            scratchpad: Vec::new(),
            unavailable_resources: vec!["Merge Requests, Pipelines, Vulnerabilities".into()],
            current_date: "Friday, March, 07, 2025".into(),
            scopes: None,
        }
    }

    #[test]
    fn only_tools_the_token_allows_are_offered() {
        let mut i = input(vec![user("Summarize issue #1")]);
        i.scopes = Some(vec!["duo_chat".into(), "ask_issue".into()]);
        let r = react_request(&i).unwrap();
        let system = r.system.as_deref().unwrap();
        assert!(system.contains("<name>issue_reader</name>"));
        assert!(
            system.contains("<name>commit_reader</name>"),
            "commit_reader needs duo_chat"
        );
        assert!(!system.contains("<name>epic_reader</name>"));
        assert!(!system.contains("<name>gitlab_documentation</name>"));
        assert!(
            system.contains("one of [issue_reader, commit_reader]"),
            "{system}"
        );
        // No scopes known (authentication bypassed): every tool.
        let all = react_request(&input(vec![user("x")])).unwrap();
        assert!(all
            .system
            .as_deref()
            .unwrap()
            .contains(&format!("one of [{}]", tool_names())));
    }

    #[test]
    fn simple_question() {
        let r = react_request(&input(vec![user("How do I revert a commit?")])).unwrap();
        let system = r.system.as_deref().unwrap();
        assert!(system.contains("Today is Friday, March, 07, 2025."));
        assert!(system.contains("<name>gitlab_documentation</name>"));
        assert!(system.contains(&format!("one of [{}]", tool_names())));
        assert!(system.contains(
            "You cannot reach these GitLab resources at the moment: Merge Requests, Pipelines, Vulnerabilities."
        ));
        assert!(!system.contains("{{"));
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].role, Role::User);
        assert_eq!(r.messages[0].content, "How do I revert a commit?");
        assert_eq!(r.messages[1].role, Role::Assistant);
        assert_eq!(r.messages[1].content, "Thought:");
        assert_eq!(r.stop_sequences, ["Observation:"]);
        assert_eq!(r.max_tokens, 4096);
        assert_eq!(r.temperature, Some(0.0));
    }

    #[test]
    fn contexts_history_and_scratchpad() {
        let step = Step {
            thought: "search docs".into(),
            tool: "gitlab_documentation".into(),
            tool_input: "revert".into(),
            observation: "use git revert".into(),
        };
        let mut inp = input(vec![
            user("first"),
            Turn::Assistant {
                content: "answer one".into(),
                steps: vec![step.clone()],
            },
            Turn::User {
                content: "explain this".into(),
                page: Some(PageContext {
                    kind: "merge_request".into(),
                    title: Some("Fix login".into()),
                    content: None,
                }),
                current_file: Some(CurrentFile {
                    file_path: "app/a.rb".into(),
                    data: "puts 1".into(),
                    selected_code: true,
                }),
                additional_context: vec![AdditionalContext {
                    category: "file".into(),
                    id: Some("lib/b.rb".into()),
                    content: Some("B = 2".into()),
                }],
            },
        ]);
        inp.scratchpad = vec![step];
        inp.unavailable_resources = Vec::new();
        let r = react_request(&inp).unwrap();
        assert!(!r
            .system
            .as_deref()
            .unwrap()
            .contains("You cannot reach these"));
        assert_eq!(r.messages.len(), 4);
        assert_eq!(
            r.messages[1].content,
            "Observation: use git revert\nFinal Answer: answer one"
        );
        let u = &r.messages[2].content;
        assert!(u.contains("<type>merge_request</type>"), "{u}");
        assert!(u.contains("the page of a merge request"), "{u}");
        assert!(u.contains("Its title is 'Fix login'"), "{u}");
        assert!(u.contains("from the file app/a.rb"), "{u}");
        assert!(u.contains("<id>lib/b.rb</id>") && u.contains("<category>file</category>"));
        assert!(u.ends_with("explain this"), "{u}");
        assert_eq!(
            r.messages[3].content,
            "Thought: search docs\nAction: gitlab_documentation\nAction Input: revert\nObservation: use git revert\nThought:"
        );
    }

    #[test]
    fn deprecated_content_context_and_untitled_build() {
        let mut inp = input(vec![Turn::User {
            content: "q".into(),
            page: Some(PageContext {
                kind: "issue".into(),
                title: None,
                content: Some("Rails text".into()),
            }),
            current_file: Some(CurrentFile {
                file_path: "x.py".into(),
                data: "print()".into(),
                selected_code: false,
            }),
            additional_context: Vec::new(),
        }]);
        let r = react_request(&inp).unwrap();
        assert!(r.messages[0]
            .content
            .contains("<content>Rails text</content>"));
        assert!(r.messages[0].content.contains("has the file x.py open"));
        inp.turns = vec![Turn::User {
            content: "q".into(),
            page: Some(PageContext {
                kind: "build".into(),
                title: None,
                content: None,
            }),
            current_file: None,
            additional_context: Vec::new(),
        }];
        let r = react_request(&inp).unwrap();
        assert!(r.messages[0].content.contains("page of a CI/CD build"));
        assert!(!r.messages[0].content.contains("Its title"));
    }

    #[test]
    fn last_message_must_be_from_the_user() {
        assert_eq!(
            react_request(&input(vec![])),
            Err(ReactError::LastMessageNotHuman)
        );
        assert_eq!(
            react_request(&input(vec![
                user("q"),
                Turn::Assistant {
                    content: "a".into(),
                    steps: vec![]
                }
            ])),
            Err(ReactError::LastMessageNotHuman)
        );
    }

    #[test]
    fn user_text_with_template_tags_stays_literal() {
        let r = react_request(&input(vec![user("{{tools}} {{#x}}y{{/x}}")])).unwrap();
        assert_eq!(r.messages[0].content, "{{tools}} {{#x}}y{{/x}}");
    }

    #[test]
    fn consecutive_user_turns_are_merged() {
        let r = react_request(&input(vec![user("a"), user("b")])).unwrap();
        assert_eq!(r.messages[0].content, "a\n\nb");
        assert_eq!(r.messages.len(), 2);
    }
}
