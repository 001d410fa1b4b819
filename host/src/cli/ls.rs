//! `shoal ls`: the deployed apps, as a table.

use clap::Args;

use crate::cli::AdminFlags;
use crate::units::format_size as size;

/// List the apps of a host.
#[derive(Args, Debug)]
pub(crate) struct Ls {
    /// Print the admin API's JSON (`GET /v1/apps`) instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Ls {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let client = self.admin.client()?;
        if self.json {
            let apps: serde_json::Value = client.get_json("/v1/apps")?;
            println!("{}", serde_json::to_string_pretty(&apps)?);
            return Ok(());
        }
        let apps = client.list()?;
        if apps.is_empty() {
            eprintln!(
                "no apps deployed; deploy one with `shoal deploy COMPONENT.wasm --name NAME`"
            );
            return Ok(());
        }
        let rows: Vec<Vec<String>> = apps
            .iter()
            .map(|a| {
                let route = match (&a.route, &a.hostname) {
                    (Some(r), Some(h)) => format!("{h}{r}"),
                    (Some(r), None) => r.clone(),
                    (None, Some(h)) => h.clone(),
                    (None, None) => "-".into(),
                };
                // Placed nodes; a `*` marks those ready.
                let nodes: Vec<String> = a
                    .nodes
                    .iter()
                    .map(|n| {
                        if a.ready_on.contains(n) {
                            format!("{n}*")
                        } else {
                            n.clone()
                        }
                    })
                    .collect();
                vec![
                    a.name.clone(),
                    format!("v{}", a.version),
                    a.component[..12.min(a.component.len())].to_string(),
                    route,
                    if a.kind == "-" {
                        a.status.clone()
                    } else {
                        format!("{} ({})", a.status, a.kind)
                    },
                    a.replicas.clone(),
                    nodes.join(","),
                    if a.kv.is_empty() && a.kv_keys == 0 {
                        "-".into()
                    } else {
                        format!("{} keys, {}", a.kv_keys, size(a.kv_bytes))
                    },
                    a.requests.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "NAME", "VERSION", "HASH", "ROUTE", "STATUS", "REPLICAS", "NODES", "KV", "REQUESTS",
            ],
            &rows,
        );
        Ok(())
    }
}

/// Prints `rows` under `header`, in columns.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
