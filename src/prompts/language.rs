//! The language name used in prompts and in GitLab's `model.lang` response field.
//!
//! Contract: `docs/gitlab-contract.md#code-completions` (`model.lang` is the detected language name
//! lower-cased or `""`) and `#completion-prompt` (editor language, else detected from the file
//! name, lower-cased). The editor's `language_identifier` wins when present; otherwise a small
//! extension table (names follow the gateway's language ids where it has them: `js`, `ts`, `cpp`,
//! `csharp`).

/// `language_identifier` lower-cased if present and non-blank, else the language detected
/// from `file_name`'s extension, else `""`.
pub fn language_name(language_identifier: Option<&str>, file_name: &str) -> String {
    if let Some(id) = language_identifier.map(str::trim).filter(|s| !s.is_empty()) {
        return id.to_lowercase();
    }
    from_file_name(file_name).unwrap_or("").to_string()
}

/// Language detected from the file name (`None` when unknown).
pub fn from_file_name(file_name: &str) -> Option<&'static str> {
    let base = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(file_name)
        .trim();
    match base.to_ascii_lowercase().as_str() {
        "dockerfile" | "containerfile" => return Some("dockerfile"),
        "makefile" | "gnumakefile" => return Some("makefile"),
        "gemfile" | "rakefile" | "podfile" | "vagrantfile" => return Some("ruby"),
        _ => {}
    }
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() && !matches!(ext, "bashrc" | "zshrc") {
        // dotfiles such as ".gitignore" have no language
        return None;
    }
    let ext = ext.to_ascii_lowercase();
    Some(match ext.as_str() {
        "py" | "pyw" | "pyi" => "python",
        "rb" | "rake" | "gemspec" | "erb" => "ruby",
        "js" | "jsx" | "mjs" | "cjs" => "js",
        "ts" | "tsx" | "mts" | "cts" => "ts",
        "go" => "go",
        "rs" => "rust",
        "java" => "java",
        "kt" | "kts" => "kotlin",
        "c" | "h" => "c",
        "cpp" | "cc" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" => "cpp",
        "cs" => "csharp",
        "php" => "php",
        "swift" => "swift",
        "scala" | "sc" => "scala",
        "sh" | "bash" | "zsh" | "bashrc" | "zshrc" => "shell",
        "ps1" | "psm1" => "powershell",
        "sql" => "sql",
        "html" | "htm" => "html",
        "css" => "css",
        "scss" | "sass" => "scss",
        "less" => "less",
        "yaml" | "yml" => "yaml",
        "json" => "json",
        "toml" => "toml",
        "xml" => "xml",
        "md" | "markdown" => "markdown",
        "lua" => "lua",
        "pl" | "pm" => "perl",
        "r" => "r",
        "dart" => "dart",
        "ex" | "exs" => "elixir",
        "erl" | "hrl" => "erlang",
        "hs" => "haskell",
        "clj" | "cljs" | "cljc" => "clojure",
        "ml" | "mli" => "ocaml",
        "fs" | "fsx" => "fsharp",
        "vue" => "vue",
        "svelte" => "svelte",
        "tf" | "tfvars" => "terraform",
        "hcl" => "hcl",
        "proto" => "protobuf",
        "groovy" | "gradle" => "groovy",
        "m" | "mm" => "objective-c",
        "zig" => "zig",
        "nim" => "nim",
        "jl" => "julia",
        "vb" => "vb",
        "asm" | "s" => "assembly",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_language_wins_and_is_lowercased() {
        assert_eq!(language_name(Some("Python"), "x.rb"), "python");
        assert_eq!(
            language_name(Some(" typescriptreact "), "x.tsx"),
            "typescriptreact"
        );
        assert_eq!(language_name(Some(""), "x.rb"), "ruby");
        assert_eq!(language_name(Some("  "), "x.rb"), "ruby");
        assert_eq!(language_name(None, "x.rb"), "ruby");
    }

    #[test]
    fn extension_table() {
        for (f, l) in [
            ("app/models/user.rb", "ruby"),
            ("main.py", "python"),
            ("a/b/c.JS", "js"),
            ("x.tsx", "ts"),
            ("main.go", "go"),
            ("lib.rs", "rust"),
            ("A.java", "java"),
            ("b.kt", "kotlin"),
            ("c.h", "c"),
            ("d.cpp", "cpp"),
            ("E.cs", "csharp"),
            ("f.php", "php"),
            ("g.swift", "swift"),
            ("h.scala", "scala"),
            ("run.sh", "shell"),
            ("q.sql", "sql"),
            ("i.html", "html"),
            ("s.css", "css"),
            (".gitlab-ci.yml", "yaml"),
            ("p.json", "json"),
            ("README.md", "markdown"),
            ("Dockerfile", "dockerfile"),
            ("src\\win\\x.py", "python"),
        ] {
            assert_eq!(language_name(None, f), l, "{f}");
        }
    }

    #[test]
    fn unknown_is_empty() {
        for f in ["", "noext", "x.unknownext", ".gitignore", "dir/", "x."] {
            assert_eq!(language_name(None, f), "", "{f}");
        }
    }
}
