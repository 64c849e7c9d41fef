//! Post-processing of non-streamed code generations.
//!
//! Contract: `docs/gitlab-contract.md#post-processing`. Steps, in order:
//! 0. [`strip_new_code_tags`]: defensive: drop a leading `<new_code>` the model may repeat
//!    after the prefill, and cut at `</new_code>` if the stop sequence did not apply;
//! 1. [`strip_code_fences`]: remove every line that is only a Markdown fence opener/closer
//!    (```` ``` ```` followed by non-blank characters, e.g. ```` ```python ````, ending with a
//!    newline; `\r\n` too), then trailing backticks;
//! 2. [`prepend_newline`]: when the code above the cursor does not end with `\n` and the text
//!    does not start with `\n`, prepend `\n` (generated code starts on its own line);
//! 3. [`clean_model_reflection`]: drop lines where the model repeats the existing code
//!    (see the function for the exact rule);
//! 4. [`empty_if_blank`]: whitespace-only → `""`.
//!
//! Code completions are not post-processed, and neither are streams (as in GitLab).

use std::collections::BTreeMap;

use crate::prompts::generation::{NEW_CODE_CLOSE, NEW_CODE_OPEN};

/// Runs steps 0–4 on a generation answer; `prefix` is `content_above_cursor`.
pub fn generation(prefix: &str, text: &str) -> String {
    let text = strip_new_code_tags(text);
    let text = strip_code_fences(text);
    let text = prepend_newline(prefix, text);
    let text = clean_model_reflection(prefix, &text);
    empty_if_blank(text)
}

/// Step 0.
pub fn strip_new_code_tags(text: &str) -> &str {
    let trimmed = text.trim_start();
    let text = trimmed.strip_prefix(NEW_CODE_OPEN).unwrap_or(text);
    match text.find(NEW_CODE_CLOSE) {
        Some(i) => text.get(..i).unwrap_or(text),
        None => text,
    }
}

/// Step 1.
pub fn strip_code_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if is_fence_line(line) {
            continue;
        }
        out.push_str(line);
    }
    let kept = out.trim_end_matches('`').len();
    out.truncate(kept);
    out
}

fn is_fence_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("```") else {
        return false;
    };
    let Some(rest) = rest.strip_suffix('\n') else {
        return false;
    };
    let rest = rest.strip_suffix('\r').unwrap_or(rest);
    !rest.chars().any(char::is_whitespace)
}

/// Step 2.
pub fn prepend_newline(prefix: &str, text: String) -> String {
    if !text.is_empty() && !prefix.ends_with('\n') && !text.starts_with('\n') {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('\n');
        s.push_str(&text);
        s
    } else {
        text
    }
}

/// Step 4.
pub fn empty_if_blank(text: String) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        text
    }
}

/// Comment starts of GitLab's rule (`/*`, `//`, `#`).
const COMMENT_STARTS: [&str; 3] = ["/*", "//", "#"];
/// How many prefix occurrences of a line are tried as a run start (latest first).
const MAX_MATCH_STARTS: usize = 16;
/// Longest run compared.
const MAX_RUN: usize = 500;
/// A run of repeated lines is dropped from this many lines on…
const MIN_BLOCK_LINES: usize = 3;
/// …when at least this many of them are distinctive…
const MIN_DISTINCTIVE_LINES: usize = 2;
/// …i.e. have at least this many non-whitespace characters.
const DISTINCTIVE_CHARS: usize = 10;

/// Step 3: drops lines in which the model repeats code that is already above the cursor.
///
/// This project's version of GitLab's `clean_model_reflection` (same intent, simpler rule):
/// * the rest of the cursor line (the text up to the first newline, unless the prefix already
///   ends a line) is always kept;
/// * after it, the text is split into lines and each line is compared, whitespace-trimmed,
///   with the prefix lines. At each line, the longest run of consecutive lines equal to a run
///   of consecutive prefix lines is found;
/// * the run is **dropped** when it is a repeated block (≥ 3 lines, ≥ 2 of them with ≥ 10
///   non-whitespace characters) or a single repeated comment line (starting with `//`, `#`
///   or `/*`: the model echoing the instruction comment);
/// * everything else is kept: short lines such as `}` or `end` legitimately recur.
///
/// Work is bounded (16 candidate positions per line, runs of ≤ 500 lines).
pub fn clean_model_reflection(prefix: &str, completion: &str) -> String {
    let split = if prefix.trim_end_matches([' ', '\t']).ends_with('\n') {
        0
    } else {
        match completion.find('\n') {
            Some(i) => i + 1,
            None => return completion.to_string(),
        }
    };
    let (head, tail) = completion.split_at(split);
    let lines: Vec<&str> = tail.split_inclusive('\n').collect();
    let trimmed: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    let prefix_lines: Vec<&str> = prefix.lines().map(str::trim).collect();
    // BTreeMap, not HashMap: no random seed needed inside the Wasm VM.
    let mut index: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (j, l) in prefix_lines.iter().enumerate() {
        if !l.is_empty() {
            index.entry(l).or_default().push(j);
        }
    }

    let mut out = String::with_capacity(completion.len());
    out.push_str(head);
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        let t = trimmed.get(i).copied().unwrap_or("");
        let run = index
            .get(t)
            .map(|starts| {
                starts
                    .iter()
                    .rev()
                    .take(MAX_MATCH_STARTS)
                    .map(|&j| run_length(&trimmed, i, &prefix_lines, j))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let drop = if run >= MIN_BLOCK_LINES {
            trimmed
                .iter()
                .skip(i)
                .take(run)
                .filter(|l| l.chars().filter(|c| !c.is_whitespace()).count() >= DISTINCTIVE_CHARS)
                .count()
                >= MIN_DISTINCTIVE_LINES
        } else {
            run == 1 && COMMENT_STARTS.iter().any(|c| t.starts_with(c))
        };
        if drop {
            i += run;
        } else {
            out.push_str(line);
            i += 1;
        }
    }
    out
}

fn run_length(lines: &[&str], i: usize, prefix_lines: &[&str], j: usize) -> usize {
    let mut k = 0;
    while k < MAX_RUN {
        match (lines.get(i + k), prefix_lines.get(j + k)) {
            (Some(a), Some(b)) if a == b => k += 1,
            _ => break,
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_code_tags() {
        assert_eq!(
            strip_new_code_tags("\n<new_code>\nx = 1\n</new_code>\ntrailing"),
            "\nx = 1\n"
        );
        assert_eq!(strip_new_code_tags("x = 1"), "x = 1");
        assert_eq!(strip_new_code_tags("  x <new_code>"), "  x <new_code>");
    }

    #[test]
    fn fences() {
        assert_eq!(
            strip_code_fences("```python\ndef f():\n    pass\n```"),
            "def f():\n    pass\n"
        );
        assert_eq!(strip_code_fences("```\r\ncode\r\n```\r\n"), "code\r\n");
        assert_eq!(strip_code_fences("a\n```js\nb\n```\nc"), "a\nb\nc");
        // a fence with words after it is not a fence line
        assert_eq!(strip_code_fences("``` not a fence\n"), "``` not a fence\n");
        assert_eq!(strip_code_fences("x = `y`"), "x = `y");
        assert_eq!(strip_code_fences(""), "");
    }

    #[test]
    fn newline_rule() {
        assert_eq!(
            prepend_newline("def hello():\n  ", "print(1)".into()),
            "\nprint(1)"
        );
        assert_eq!(prepend_newline("# sort\n", "x".into()), "x");
        assert_eq!(prepend_newline("abc", "\nx".into()), "\nx");
        assert_eq!(prepend_newline("abc", String::new()), "");
    }

    #[test]
    fn blank() {
        assert_eq!(empty_if_blank(" \n\t ".into()), "");
        assert_eq!(empty_if_blank(" x ".into()), " x ");
    }

    #[test]
    fn reflection_drops_repeated_blocks_and_comments() {
        let prefix = "import os\n\ndef load_config(path):\n    with open(path) as handle:\n        return handle.read()\n\n# write a function that prints hello\n";
        let completion = "def load_config(path):\n    with open(path) as handle:\n        return handle.read()\n# write a function that prints hello\ndef hello():\n    print(\"hello\")\n";
        assert_eq!(
            clean_model_reflection(prefix, completion),
            "def hello():\n    print(\"hello\")\n"
        );
    }

    #[test]
    fn reflection_keeps_short_and_partial_repeats() {
        let prefix = "fn a() {\n    let x = compute_value();\n}\n";
        // "}" repeats, a single non-comment line repeats, two-line repeats: all kept
        let completion = "fn b() {\n    let x = compute_value();\n}\n";
        assert_eq!(clean_model_reflection(prefix, completion), completion);
        // without a newline in the completion the cursor line is all there is
        assert_eq!(
            clean_model_reflection("x = ", "compute_value()"),
            "compute_value()"
        );
    }

    #[test]
    fn reflection_keeps_the_cursor_line() {
        // prefix does not end a line: the first completion line finishes it and is kept
        let prefix = "# hello\nprint(";
        assert_eq!(
            clean_model_reflection(prefix, "1)\n# hello\nx\n"),
            "1)\nx\n"
        );
        // trailing spaces after the last newline still count as a line end
        assert_eq!(clean_model_reflection("# hi\n   ", "# hi\ny\n"), "y\n");
    }

    #[test]
    fn full_pipeline() {
        assert_eq!(
            generation("def hello():\n  ", "```python\nprint('hi')\n```"),
            "\nprint('hi')\n"
        );
        assert_eq!(generation("x\n", "```\n\n```"), "");
        assert_eq!(generation("x\n", ""), "");
        assert_eq!(
            generation(
                "# sort a list of ints\n",
                "\ndef sort_ints(xs):\n    return sorted(xs)\n"
            ),
            "\ndef sort_ints(xs):\n    return sorted(xs)\n"
        );
    }

    #[test]
    fn reflection_is_bounded_on_hostile_input() {
        let prefix = "}\n".repeat(50_000);
        let completion = "}\n".repeat(2_000);
        let out = clean_model_reflection(&prefix, &completion);
        assert_eq!(out, completion);
    }
}
