//! `shoal logs NAME [--follow]`: an app's recent guest output, with the
//! terminal control characters a guest wrote shown escaped, never obeyed.

use std::borrow::Cow;
use std::fmt::Write;

use clap::Args;

use crate::cli::AdminFlags;

/// Print the recent stdout and stderr of an app's guests.
#[derive(Args, Debug)]
pub(crate) struct Logs {
    /// The app.
    name: String,

    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    follow: bool,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Logs {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        self.admin.client()?.logs(&self.name, self.follow, |line| {
            println!("{}", escaped(line))
        })
    }
}

/// `line` with every character a terminal would act on written as an
/// escape (`\x1b`, `\r`, `\u{202e}`): a guest's output can then neither
/// move the cursor, rewrite earlier lines, set the window title, nor
/// reorder text with bidirectional overrides in the reader's terminal.
fn escaped(line: &str) -> Cow<'_, str> {
    if !line.chars().any(acts_on_terminal) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if acts_on_terminal(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if acts_on_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0 but tab, DEL, C1) and the bidirectional
/// formatting characters.
fn acts_on_terminal(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert!(matches!(escaped("plain\ttext, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            escaped("\u{1b}[31mred\u{1b}[0m\rover\u{7}\u{9b}2J\u{202e}txt"),
            "\\x1b[31mred\\x1b[0m\\rover\\x07\\x9b2J\\u{202e}txt"
        );
    }
}
