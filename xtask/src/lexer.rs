//! Just enough of a Rust lexer for the source checks: comments and string
//! and character literals are blanked out (their newlines kept, so line
//! numbers stay true), and what is left is cut into identifiers, `::` and
//! single punctuation characters.

/// A token of blanked source, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub line: usize,
}

impl Token {
    /// An identifier or keyword (`$crate` included), not punctuation.
    pub fn is_ident(&self) -> bool {
        let first = self.text.chars().next().unwrap_or(' ');
        first == '_' || first == '$' || first.is_alphabetic()
    }
}

/// The tokens of `source`, comments and literals left out.
pub fn tokens(source: &str) -> Vec<Token> {
    split(&blank(source))
}

/// `source` with every comment and string or character literal replaced
/// by spaces; newlines are kept.
pub fn blank(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let end = literal_or_comment_end(&chars, i);
        if end == i {
            out.push(chars[i]);
            i += 1;
        } else {
            for &c in &chars[i..end] {
                out.push(if c == '\n' { '\n' } else { ' ' });
            }
            i = end;
        }
    }
    out
}

/// Where the comment or literal starting at `i` ends (exclusive), or `i`
/// when none starts there.
fn literal_or_comment_end(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let after_ident = i > 0 && is_ident_char(chars[i - 1]);
    match at(i) {
        '/' if at(i + 1) == '/' => (i..chars.len())
            .find(|&k| chars[k] == '\n')
            .unwrap_or(chars.len()),
        '/' if at(i + 1) == '*' => block_comment_end(chars, i),
        '"' => string_end(chars, i + 1),
        '\'' => char_end(chars, i),
        'r' | 'b' | 'c' if !after_ident => raw_string_end(chars, i),
        _ => i,
    }
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Block comments nest in Rust.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut k = start;
    while k + 1 < chars.len() {
        match (chars[k], chars[k + 1]) {
            ('/', '*') => {
                depth += 1;
                k += 2;
            }
            ('*', '/') => {
                depth -= 1;
                k += 2;
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    chars.len()
}

/// The end of a `"..."` literal whose content starts at `k`.
fn string_end(chars: &[char], mut k: usize) -> usize {
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// A character literal (`'a'`, `'\n'`, `'\u{7f}'`), or `start` for a
/// lifetime or label (`'a`, `'static`), which stays as code.
fn char_end(chars: &[char], start: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    if at(start + 1) == '\\' {
        let mut k = start + 3;
        while k < chars.len() && chars[k] != '\'' && chars[k] != '\n' {
            k += 1;
        }
        return (k + 1).min(chars.len());
    }
    if at(start + 2) == '\'' && at(start + 1) != '\'' {
        return start + 3;
    }
    start
}

/// `r"..."`, `r#"..."#`, `br"..."`, `cr#"..."#`, and the `b"..."` / `c"..."`
/// prefixes of ordinary strings; `start` when none starts there (an
/// identifier such as `r#match` or `bytes`).
fn raw_string_end(chars: &[char], start: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let mut k = start;
    if at(k) != 'r' {
        k += 1;
        if at(k) == '"' {
            return string_end(chars, k + 1);
        }
        if at(k) == '\'' && at(start) == 'b' {
            let end = char_end(chars, k);
            return if end == k { start } else { end };
        }
        if at(k) != 'r' {
            return start;
        }
    }
    k += 1;
    let hashes = chars[k..].iter().take_while(|&&c| c == '#').count();
    k += hashes;
    if at(k) != '"' {
        return start;
    }
    k += 1;
    while k < chars.len() {
        if chars[k] == '"'
            && chars[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return k + 1 + hashes;
        }
        k += 1;
    }
    chars.len()
}

/// Cut blanked source into tokens: identifiers (`r#` dropped, `$crate`
/// kept whole), numbers, `::`, and any other character on its own.
fn split(blanked: &str) -> Vec<Token> {
    let chars: Vec<char> = blanked.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == 'r' && chars.get(i + 1) == Some(&'#') {
            i += 2;
        }
        let word_start = i;
        if chars[i] == '$' {
            i += 1;
        }
        while i < chars.len() && is_ident_char(chars[i]) {
            i += 1;
        }
        let text: String = if i > word_start && (chars[word_start] != '$' || i > word_start + 1) {
            chars[word_start..i].iter().collect()
        } else if c == ':' && chars.get(start + 1) == Some(&':') {
            i = start + 2;
            "::".into()
        } else {
            i = start + 1;
            c.to_string()
        };
        tokens.push(Token { text, line });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<String> {
        tokens(source).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn comments_and_strings_are_blank() {
        let source = "a // crate::x\n/* crate::y /* nested */ still */ b \"crate::z\\\"\" c";
        assert_eq!(texts(source), ["a", "b", "c"]);
        assert_eq!(tokens(source)[1].line, 2);
    }

    #[test]
    fn raw_strings_chars_and_lifetimes() {
        let source = "r#\"crate::a \" x\"#; b\"crate\"; '{'; '\\''; &'a str; b'}'; r#match";
        assert_eq!(
            texts(source),
            [";", ";", ";", ";", "&", "'", "a", "str", ";", ";", "match"]
        );
    }

    #[test]
    fn paths_and_dollar_crate() {
        assert_eq!(
            texts("$crate::a::{b, c}"),
            ["$crate", "::", "a", "::", "{", "b", ",", "c", "}"]
        );
    }
}
