//! Size budgets for prompts, measured in UTF-8 bytes instead of tokens.
//!
//! Contract: `docs/gitlab-contract.md#completion-prompt`: GitLab's gateway gives code completion an
//! input budget of 2 048 tokens (counted with a bundled tokenizer), 7 % reserved for the suffix.
//! There is no tokenizer in the filter, so **1 token ≈ 4 bytes of UTF-8** is used: 2 048
//! tokens → 8 192 bytes. Code averages 3–4 bytes per token, so this errs on the small side.
//!
//! Truncation never splits a UTF-8 character and prefers line boundaries: when a cut falls
//! inside a line, the partial line is dropped as long as that loses at most half of the kept
//! text (otherwise, e.g. for minified code, the cut stays at a character boundary).

/// Input token budget of a code completion (prefix + suffix + IDE context).
pub const COMPLETION_TOKEN_BUDGET: usize = 2048;
/// The estimate used everywhere here.
pub const BYTES_PER_TOKEN: usize = 4;
/// [`COMPLETION_TOKEN_BUDGET`] in bytes.
pub const COMPLETION_BUDGET_BYTES: usize = COMPLETION_TOKEN_BUDGET * BYTES_PER_TOKEN;
/// Share of the completion budget reserved for the suffix.
pub const SUFFIX_PERCENT: usize = 7;

/// Estimated token count of `bytes` bytes of text (rounded up).
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(BYTES_PER_TOKEN as u64)
}

/// The longest tail of `s` of at most `max_bytes` bytes, starting at a line start if possible.
pub fn keep_end(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut start = s.len().saturating_sub(max_bytes);
    while start < s.len() && !s.is_char_boundary(start) {
        start += 1;
    }
    let window = s.get(start..).unwrap_or("");
    // `start > 0` here, so the first line of the window is partial (unless the cut fell
    // right after a newline).
    if start > 0 && s.as_bytes().get(start - 1) == Some(&b'\n') {
        return window;
    }
    match window.find('\n') {
        Some(i) if i < window.len() / 2 => window.get(i + 1..).unwrap_or(window),
        _ => window,
    }
}

/// The longest head of `s` of at most `max_bytes` bytes, ending after a newline if possible.
pub fn keep_start(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let window = s.get(..end).unwrap_or("");
    if window.ends_with('\n') {
        return window;
    }
    match window.rfind('\n') {
        Some(i) if i + 1 >= window.len() / 2 && i > 0 => window.get(..i + 1).unwrap_or(window),
        _ => window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(COMPLETION_BUDGET_BYTES, 8192);
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }

    #[test]
    fn keep_end_prefers_line_start() {
        assert_eq!(keep_end("abc", 3), "abc");
        assert_eq!(keep_end("abc", 0), "");
        assert_eq!(keep_end("", 10), "");
        // cut inside "line1": drop the partial line
        assert_eq!(keep_end("line1\nline2\nline3", 14), "line2\nline3");
        // cut exactly after a newline: keep all
        assert_eq!(keep_end("line1\nline2", 5), "line2");
        // the only newline is late: keep the character cut
        assert_eq!(keep_end("aaaaaaaaaaaaaaaa\nb", 10), "aaaaaaaa\nb");
        // no newline at all
        assert_eq!(keep_end("abcdef", 4), "cdef");
    }

    #[test]
    fn keep_start_prefers_line_end() {
        assert_eq!(keep_start("abc", 3), "abc");
        assert_eq!(keep_start("abc", 0), "");
        assert_eq!(keep_start("line1\nline2\nline3", 14), "line1\nline2\n");
        assert_eq!(keep_start("line1\nline2", 6), "line1\n");
        assert_eq!(keep_start("a\nbbbbbbbbbbbbbbbb", 10), "a\nbbbbbbbb");
        assert_eq!(keep_start("abcdef", 4), "abcd");
    }

    #[test]
    fn never_splits_utf8() {
        let s = "é€😀".repeat(50);
        for max in 0..s.len() + 2 {
            let e = keep_end(&s, max);
            let b = keep_start(&s, max);
            assert!(e.len() <= max && b.len() <= max);
            assert!(s.ends_with(e) && s.starts_with(b));
            assert!(e.len() + 4 > max.min(s.len()), "end {max}");
            assert!(b.len() + 4 > max.min(s.len()), "start {max}");
        }
        let with_lines = "ab\n€€\n😀😀😀\n".repeat(30);
        for max in 0..with_lines.len() + 2 {
            let e = keep_end(&with_lines, max);
            let b = keep_start(&with_lines, max);
            assert!(e.len() <= max && b.len() <= max);
            assert!(with_lines.ends_with(e) && with_lines.starts_with(b));
        }
    }
}
