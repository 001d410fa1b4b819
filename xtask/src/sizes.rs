//! `cargo xtask sizes`: no source file over [`MAX_FILE_LINES`] lines (its
//! tests included) and no function over [`MAX_FN_LINES`], counted from the
//! line of `fn` to that of its closing brace. Braces in comments, strings
//! and character literals do not count.

use std::path::Path;

use crate::{lexer, source_tree};

pub const MAX_FILE_LINES: usize = 600;
pub const MAX_FN_LINES: usize = 80;

/// The folders whose `.rs` files are measured.
pub const TREES: &[&str] = &[
    "host/src",
    "runtime/src",
    "sdk/src",
    "sdk/macro/src",
    "xtask/src",
    "tests",
    "examples",
];

/// Measure every tree of the workspace at `root`, printing each offender.
pub fn run(root: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    for tree in TREES {
        for (path, text) in source_tree::read(&root.join(tree))? {
            files.push((format!("{tree}/{path}"), text));
        }
    }
    let errors = check(&files);
    for error in &errors {
        eprintln!("{error}");
    }
    if errors.is_empty() {
        eprintln!("sizes: {} files, none too long", files.len());
        Ok(())
    } else {
        Err(format!(
            "sizes: {} too long; split a file past {MAX_FILE_LINES} lines into a module per noun, a function past {MAX_FN_LINES} into steps",
            errors.len()
        ))
    }
}

/// The offenders among `files` (path as printed, text).
pub fn check(files: &[(String, String)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, text) in files {
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            errors.push(format!(
                "{path}:1: file is {lines} lines (limit {MAX_FILE_LINES})"
            ));
        }
        for function in functions(text) {
            if function.lines > MAX_FN_LINES {
                errors.push(format!(
                    "{path}:{}: fn {} is {} lines (limit {MAX_FN_LINES})",
                    function.line, function.name, function.lines
                ));
            }
        }
    }
    errors
}

/// A function with a body.
#[derive(Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub line: usize,
    pub lines: usize,
}

/// Every function of `source` that has a body, nested ones included.
pub fn functions(source: &str) -> Vec<Function> {
    let tokens = lexer::tokens(source);
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let mut found = Vec::new();
    for i in 0..tokens.len() {
        if text(i) != "fn" || !tokens.get(i + 1).is_some_and(lexer::Token::is_ident) {
            continue;
        }
        let Some(open) = body_start(&tokens, i + 2) else {
            continue;
        };
        let mut depth = 0usize;
        let close = (open..tokens.len()).find(|&k| {
            match text(k) {
                "{" => depth += 1,
                "}" => depth -= 1,
                _ => {}
            }
            depth == 0
        });
        let end = close.map_or_else(|| tokens.last().map_or(0, |t| t.line), |k| tokens[k].line);
        let line = tokens[i].line;
        let name = text(i + 1).to_string();
        found.push(Function {
            name,
            line,
            lines: end - line + 1,
        });
    }
    found
}

/// The `{` opening the body of the function whose signature starts at
/// `i`; `None` for a declaration ending in `;`.
fn body_start(tokens: &[lexer::Token], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, token) in tokens.iter().enumerate().skip(i) {
        match token.text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth = depth.saturating_sub(1),
            "{" if depth == 0 => return Some(k),
            ";" if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function of `lines` lines from `fn` to its closing brace, with
    /// braces in a string, a char and comments along the way.
    fn function(lines: usize) -> String {
        let mut text = String::from("fn long(x: [u8; 2]) -> u8 {\n");
        let fillers = [
            "    let _ = \"}}\";\n",
            "    let _ = '}';\n",
            "    // }\n",
            "    /* } */\n",
        ];
        for n in 0..lines - 2 {
            text.push_str(fillers[n % fillers.len()]);
        }
        text.push_str("}\n");
        assert_eq!(text.lines().count(), lines);
        text
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        check(&files)
    }

    #[test]
    fn an_81_line_function_fails_and_an_80_line_one_passes() {
        let long = format!("//! A file.\n\n{}", function(81));
        assert_eq!(
            errors(&[("a.rs", &long)]),
            ["a.rs:3: fn long is 81 lines (limit 80)"]
        );
        assert_eq!(errors(&[("b.rs", &function(80))]), Vec::<String>::new());
    }

    #[test]
    fn nested_functions_and_declarations() {
        let source = "trait T { fn decl(&self); fn with_body(&self) {\n} }\nfn outer() {\n    fn inner() {}\n}\nfn pointer(f: fn(u8) -> u8) {}";
        let found: Vec<(String, usize, usize)> = functions(source)
            .into_iter()
            .map(|f| (f.name, f.line, f.lines))
            .collect();
        assert_eq!(
            found,
            [
                ("with_body".into(), 1, 2),
                ("outer".into(), 3, 3),
                ("inner".into(), 4, 1),
                ("pointer".into(), 6, 1)
            ]
        );
    }

    #[test]
    fn a_file_over_600_lines_fails() {
        let text = "\n".repeat(601);
        assert_eq!(
            errors(&[("big.rs", &text)]),
            ["big.rs:1: file is 601 lines (limit 600)"]
        );
        assert_eq!(
            errors(&[("ok.rs", &"\n".repeat(600))]),
            Vec::<String>::new()
        );
    }
}
