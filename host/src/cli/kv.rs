//! `shoal kv ls|get|set|rm APP [STORE] [KEY]`: an app's key-value data,
//! through the admin API (`/v1/kv`). STORE defaults to `default`.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::cli::AdminFlags;
use crate::cli::ls::print_table;
use crate::units::format_size as size;

/// See and fix the key-value data of an app.
#[derive(Args, Debug)]
pub(crate) struct Kv {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// List an app's stores (with sizes), or the keys of one store.
    Ls {
        app: String,
        store: Option<String>,
        #[command(flatten)]
        admin: AdminFlags,
    },
    /// Print a value (raw bytes) to stdout.
    Get {
        app: String,
        /// `[STORE] KEY`.
        #[arg(num_args = 1..=2, required = true, value_name = "[STORE] KEY")]
        rest: Vec<String>,
        #[command(flatten)]
        admin: AdminFlags,
    },
    /// Set a value: the text given, `@FILE` for a file's bytes, `-` for stdin.
    Set {
        app: String,
        /// `[STORE] KEY VALUE|@FILE|-`.
        #[arg(num_args = 2..=3, required = true, value_name = "[STORE] KEY VALUE")]
        rest: Vec<String>,
        #[command(flatten)]
        admin: AdminFlags,
    },
    /// Delete a key.
    Rm {
        app: String,
        /// `[STORE] KEY`.
        #[arg(num_args = 1..=2, required = true, value_name = "[STORE] KEY")]
        rest: Vec<String>,
        #[command(flatten)]
        admin: AdminFlags,
    },
}

#[derive(Deserialize)]
struct StoreRow {
    store: String,
    keys: u64,
    bytes: u64,
}

#[derive(Deserialize)]
struct Page {
    keys: Vec<String>,
    cursor: Option<String>,
}

impl Kv {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let client = match &self.verb {
            Verb::Ls { admin, .. }
            | Verb::Get { admin, .. }
            | Verb::Set { admin, .. }
            | Verb::Rm { admin, .. } => admin.client()?,
        };
        match self.verb {
            Verb::Ls {
                app, store: None, ..
            } => {
                let stores: Vec<StoreRow> = client.get_json(&format!("/v1/kv/{}", encode(&app)))?;
                if stores.is_empty() {
                    eprintln!("app `{app}` keeps no key-value data");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = stores
                    .iter()
                    .map(|s| vec![s.store.clone(), s.keys.to_string(), size(s.bytes)])
                    .collect();
                print_table(&["STORE", "KEYS", "SIZE"], &rows);
            }
            Verb::Ls {
                app,
                store: Some(store),
                ..
            } => {
                let base = format!("/v1/kv/{}/{}", encode(&app), encode(&store));
                let mut cursor: Option<String> = None;
                loop {
                    let path = match &cursor {
                        Some(c) => format!("{base}?cursor={c}"),
                        None => base.clone(),
                    };
                    let page: Page = client.get_json(&path)?;
                    for key in page.keys {
                        println!("{key}");
                    }
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
            Verb::Get { app, rest, .. } => {
                let (store, key) = store_and_key(&rest);
                match client.get_bytes(&key_path(&app, store, key))? {
                    Some(value) => std::io::stdout().write_all(&value)?,
                    None => bail!("no key `{key}` in store `{store}` of app `{app}`"),
                }
            }
            Verb::Set { app, rest, .. } => {
                let (value, rest) = rest.split_last().context("no value given")?;
                let (store, key) = store_and_key(rest);
                let bytes = read_value(value)?;
                let _: serde_json::Value = client.send_json(
                    "PUT",
                    &key_path(&app, store, key),
                    "application/octet-stream",
                    &bytes,
                )?;
                eprintln!(
                    "set `{key}` in store `{store}` of app `{app}` ({})",
                    size(bytes.len() as u64)
                );
            }
            Verb::Rm { app, rest, .. } => {
                let (store, key) = store_and_key(&rest);
                let _: serde_json::Value = client.send_json(
                    "DELETE",
                    &key_path(&app, store, key),
                    "application/json",
                    b"",
                )?;
                eprintln!("deleted `{key}` from store `{store}` of app `{app}`");
            }
        }
        Ok(())
    }
}

/// `[STORE] KEY`: one word is a key of `default`.
fn store_and_key(rest: &[String]) -> (&str, &str) {
    match rest {
        [key] => ("default", key),
        [store, key, ..] => (store, key),
        [] => ("default", ""),
    }
}

fn key_path(app: &str, store: &str, key: &str) -> String {
    format!("/v1/kv/{}/{}/{}", encode(app), encode(store), encode(key))
}

/// The text itself, `@FILE`'s bytes, or stdin for `-`.
fn read_value(value: &str) -> anyhow::Result<Vec<u8>> {
    if value == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else if let Some(file) = value.strip_prefix('@') {
        std::fs::read(file).with_context(|| format!("cannot read `{file}`"))
    } else {
        Ok(value.as_bytes().to_vec())
    }
}

/// Percent-encodes everything but unreserved characters, so a key with
/// `/`, `%` or spaces stays one path segment.
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_encoded_as_one_segment() {
        assert_eq!(super::encode("a/b c%\u{e9}"), "a%2Fb%20c%25%C3%A9");
    }
}
