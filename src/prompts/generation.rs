//! Code generation prompt.
//!
//! Contract: `docs/gitlab-contract.md#generation-prompt`. Settings: temperature 0.2, `max_tokens`
//! 2048, `stop_sequences ["</new_code>"]`, assistant prefill `<new_code>` (so the answer is the new
//! code itself and the closing tag stops it).
//!
//! System message: role and file, optional examples, the existing code with the cursor marker
//! [`CURSOR_MARKER`] inside `<existing_code>`, optional `<related_files>`, `<related_snippets>`
//! and `<libs>` sections (from GitLab's `prompt_enhancer`, or built from IDE context), then the
//! rules. User message: the instruction, or a default of our own when there is none.
//!
//! Size caps (there is no budget in GitLab's gateway beyond Rails' own trimming to 50 000
//! characters of code): the existing code keeps at most [`CODE_BUDGET_BYTES`] (code above the
//! cursor first, keeping its end; the rest for code below, keeping its start), related
//! files + snippets at most [`RELATED_BUDGET_BYTES`] (in order; items that do not fit are
//! dropped), at most [`MAX_EXAMPLES`] examples and [`MAX_LIBRARIES`] libraries.

use crate::bedrock::messages::{Message, MessagesRequest};

use super::budget::{keep_end, keep_start};
use super::{render, trim_end_owned};

pub const GENERATION_MAX_TOKENS: u32 = 2048;
pub const GENERATION_TEMPERATURE: f64 = 0.2;
/// The assistant prefill; the model continues right after it.
pub const NEW_CODE_OPEN: &str = "<new_code>";
/// The stop sequence; Bedrock does not return it.
pub const NEW_CODE_CLOSE: &str = "</new_code>";
/// Marks the cursor inside `<existing_code>`.
pub const CURSOR_MARKER: &str = "<<CURSOR>>";
/// Cap on existing code (above + below the cursor), ≈ 50 000 tokens.
pub const CODE_BUDGET_BYTES: usize = 200_000;
/// Cap on related files + related snippets together.
pub const RELATED_BUDGET_BYTES: usize = 200_000;
pub const MAX_EXAMPLES: usize = 10;
pub const MAX_LIBRARIES: usize = 300;

const SYSTEM_TEMPLATE: &str = include_str!("templates/generation_system.txt");
const DEFAULT_INSTRUCTION: &str = include_str!("templates/generation_default_instruction.txt");
const EXAMPLES_TEMPLATE: &str = include_str!("templates/generation_examples.txt");
const EXAMPLE_ITEM_TEMPLATE: &str = include_str!("templates/generation_example_item.txt");
const RELATED_FILES_TEMPLATE: &str = include_str!("templates/generation_related_files.txt");
const RELATED_SNIPPETS_TEMPLATE: &str = include_str!("templates/generation_related_snippets.txt");
const LIBRARIES_TEMPLATE: &str = include_str!("templates/generation_libraries.txt");

/// One few-shot example (`prompt_enhancer.examples_array[*]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerationExample<'a> {
    pub example: &'a str,
    pub response: &'a str,
}

/// What a generation prompt is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationInput<'a> {
    /// Lower-cased language name, `""` if unknown.
    pub language: &'a str,
    pub file_name: &'a str,
    pub code_above: &'a str,
    pub code_below: &'a str,
    /// What the developer asked for; `None`/blank → our default instruction.
    pub instruction: Option<&'a str>,
    /// Whole related files, each already formatted (GitLab sends `<file_content …>` blocks).
    pub related_files: Vec<&'a str>,
    pub related_snippets: Vec<&'a str>,
    pub libraries: Vec<&'a str>,
    pub examples: Vec<GenerationExample<'a>>,
}

/// Builds the Bedrock Messages body of a code generation.
pub fn generation_request(input: &GenerationInput<'_>) -> MessagesRequest {
    let above = keep_end(input.code_above, CODE_BUDGET_BYTES);
    let below = keep_start(
        input.code_below,
        CODE_BUDGET_BYTES.saturating_sub(above.len()),
    );

    let language_phrase = if input.language.is_empty() {
        "code".to_string()
    } else {
        format!("{} code", input.language)
    };

    let mut related_left = RELATED_BUDGET_BYTES;
    let related_files = section(
        RELATED_FILES_TEMPLATE,
        &take_within(&input.related_files, &mut related_left),
    );
    let related_snippets = section(
        RELATED_SNIPPETS_TEMPLATE,
        &take_within(&input.related_snippets, &mut related_left),
    );
    let libraries: Vec<&str> = input
        .libraries
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .take(MAX_LIBRARIES)
        .collect();
    let libraries = section(LIBRARIES_TEMPLATE, &libraries);
    let examples = examples_section(&input.examples);

    let system = render(
        SYSTEM_TEMPLATE,
        &[
            ("language_phrase", &language_phrase),
            ("file_name", input.file_name),
            ("examples", &examples),
            ("code_above", above),
            ("code_below", below),
            ("cursor", CURSOR_MARKER),
            ("related_files", &related_files),
            ("related_snippets", &related_snippets),
            ("libraries", &libraries),
        ],
    );
    let instruction = input
        .instruction
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_INSTRUCTION.trim());

    let mut request = MessagesRequest::new(
        GENERATION_MAX_TOKENS,
        vec![
            Message::user(instruction),
            Message::assistant(NEW_CODE_OPEN),
        ],
    );
    request.system = Some(trim_end_owned(system));
    request.temperature = Some(GENERATION_TEMPERATURE);
    request.stop_sequences = vec![NEW_CODE_CLOSE.to_string()];
    request
}

/// Items in order while they fit in `left` bytes; empty items are skipped.
fn take_within<'a>(items: &[&'a str], left: &mut usize) -> Vec<&'a str> {
    let mut out = Vec::new();
    for item in items.iter().copied().filter(|i| !i.trim().is_empty()) {
        if item.len() <= *left {
            *left -= item.len();
            out.push(item);
        }
    }
    out
}

/// A titled section with one item per line block, or `""` when there are no items.
fn section(template: &str, items: &[&str]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut body = String::new();
    for item in items {
        body.push_str(item);
        if !item.ends_with('\n') {
            body.push('\n');
        }
    }
    render(template, &[("items", &body)])
}

fn examples_section(examples: &[GenerationExample<'_>]) -> String {
    let items: String = examples
        .iter()
        .filter(|e| !e.example.trim().is_empty() && !e.response.trim().is_empty())
        .take(MAX_EXAMPLES)
        .map(|e| {
            let response = e.response.trim();
            let response = if response.contains(NEW_CODE_OPEN) {
                response.to_string()
            } else {
                format!("{NEW_CODE_OPEN}\n{response}\n{NEW_CODE_CLOSE}")
            };
            render(
                EXAMPLE_ITEM_TEMPLATE,
                &[("example", e.example.trim_end()), ("response", &response)],
            )
        })
        .collect();
    if items.is_empty() {
        String::new()
    } else {
        render(EXAMPLES_TEMPLATE, &[("items", &items)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base<'a>() -> GenerationInput<'a> {
        GenerationInput {
            language: "python",
            file_name: "main.py",
            code_above: "# sort a list of ints\n",
            code_below: "",
            ..GenerationInput::default()
        }
    }

    #[test]
    fn settings_prefill_and_stop() {
        let r = generation_request(&base());
        assert_eq!(r.max_tokens, 2048);
        assert_eq!(r.temperature, Some(0.2));
        assert_eq!(r.stop_sequences, vec!["</new_code>".to_string()]);
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].role, crate::bedrock::messages::Role::User);
        assert_eq!(r.messages[0].content, DEFAULT_INSTRUCTION.trim());
        assert_eq!(r.messages[1], Message::assistant("<new_code>"));
        let sys = r.system.unwrap();
        assert!(
            sys.contains("<existing_code>\n# sort a list of ints\n<<CURSOR>>\n</existing_code>"),
            "{sys}"
        );
        assert!(sys.contains("python code") && sys.contains("\"main.py\""));
        assert!(!sys.contains("{{"), "every variable is filled: {sys}");
        assert!(
            !sys.contains("<related_files>")
                && !sys.contains("<libs>")
                && !sys.contains("<examples>")
        );
    }

    #[test]
    fn instruction_is_the_user_message() {
        let mut i = base();
        i.instruction = Some("  Write a bubble sort  ");
        let r = generation_request(&i);
        assert_eq!(r.messages[0].content, "Write a bubble sort");
        i.instruction = Some("   ");
        assert_eq!(
            generation_request(&i).messages[0].content,
            DEFAULT_INSTRUCTION.trim()
        );
    }

    #[test]
    fn optional_sections() {
        let mut i = base();
        i.related_files = vec![
            "<file_content file_name=\"a.py\">\nx = 1\n</file_content>\n",
            "",
        ];
        i.related_snippets = vec!["def helper(): pass"];
        i.libraries = vec!["numpy", " ", "requests"];
        i.examples = vec![
            GenerationExample {
                example: "# add two numbers",
                response: "def add(a, b):\n    return a + b",
            },
            GenerationExample {
                example: "",
                response: "ignored",
            },
        ];
        let sys = generation_request(&i).system.unwrap();
        assert!(sys.contains("<related_files>\n<file_content file_name=\"a.py\">\nx = 1\n</file_content>\n</related_files>"), "{sys}");
        assert!(sys.contains("<related_snippets>\ndef helper(): pass\n</related_snippets>"));
        assert!(sys.contains("<libs>\nnumpy\nrequests\n</libs>"));
        assert!(sys.contains("<request>\n# add two numbers\n</request>\n<answer>\n<new_code>\ndef add(a, b):\n    return a + b\n</new_code>\n</answer>"), "{sys}");
        assert_eq!(sys.matches("<example>").count(), 1);
    }

    #[test]
    fn code_and_related_are_capped() {
        let above = "a\n".repeat(150_000);
        let below = "b\n".repeat(150_000);
        let big = "r".repeat(150_000);
        let mut i = base();
        i.code_above = &above;
        i.code_below = &below;
        i.related_files = vec![&big, &big, "small"];
        let sys = generation_request(&i).system.unwrap();
        assert!(sys.len() < CODE_BUDGET_BYTES + RELATED_BUDGET_BYTES + 5_000);
        // code above the cursor is served first and used the whole budget
        assert!(sys.contains("a\n<<CURSOR>>\n</existing_code>"));
        assert!(!sys.contains("b\n"));
        let short_above = "x = 1\n";
        i.code_above = short_above;
        let sys = generation_request(&i).system.unwrap();
        assert!(sys.contains("x = 1\n<<CURSOR>>b\nb\n"));
        assert_eq!(sys.matches(&big).count(), 1);
        assert!(sys.contains("small\n</related_files>"));
    }

    #[test]
    fn code_with_template_markers_is_literal() {
        let mut i = base();
        i.code_above = "s = '{{cursor}}'\n";
        let sys = generation_request(&i).system.unwrap();
        assert!(sys.contains("s = '{{cursor}}'\n<<CURSOR>>"));
    }
}
