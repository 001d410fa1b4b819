//! `shoal ls`: the deployed apps, as a table.

use clap::Args;

use crate::cli::AdminFlags;

/// List the apps of a host.
#[derive(Args, Debug)]
pub(crate) struct Ls {
    #[command(flatten)]
    admin: AdminFlags,
}

impl Ls {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let apps = self.admin.client().list()?;
        if apps.is_empty() {
            eprintln!(
                "no apps deployed; deploy one with `shoal deploy COMPONENT.wasm --name NAME`"
            );
            return Ok(());
        }
        let rows: Vec<[String; 6]> = apps
            .iter()
            .map(|a| {
                let route = match (&a.route, &a.hostname) {
                    (Some(r), Some(h)) => format!("{h}{r}"),
                    (Some(r), None) => r.clone(),
                    (None, Some(h)) => h.clone(),
                    (None, None) => "-".into(),
                };
                [
                    a.name.clone(),
                    format!("v{}", a.version),
                    a.component[..12.min(a.component.len())].to_string(),
                    route,
                    format!("{} ({})", a.status, a.kind),
                    a.requests.to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "VERSION", "HASH", "ROUTE", "STATUS", "REQUESTS"].map(String::from);
        let widths: Vec<usize> = (0..6)
            .map(|i| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[i].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in [&header].into_iter().chain(&rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            println!("{}", line.join("  ").trim_end());
        }
        Ok(())
    }
}
