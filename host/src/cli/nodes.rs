//! `shoal nodes`: the members of the mesh, as a table.

use clap::Args;

use crate::cli::AdminFlags;
use crate::cli::ls::print_table;

/// List the members of the mesh a host belongs to.
#[derive(Args, Debug)]
pub(crate) struct Nodes {
    #[command(flatten)]
    admin: AdminFlags,
}

impl Nodes {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let nodes = self.admin.client()?.nodes()?;
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                vec![
                    if n.me {
                        format!("{} *", n.name)
                    } else {
                        n.name.clone()
                    },
                    n.gossip.clone(),
                    n.ingress.clone().unwrap_or_else(|| "-".into()),
                    if n.live { "live" } else { "dead" }.into(),
                    n.load.to_string(),
                    if n.apps.is_empty() {
                        "-".into()
                    } else {
                        n.apps.join(",")
                    },
                ]
            })
            .collect();
        print_table(
            &["NAME", "GOSSIP", "INGRESS", "STATE", "LOAD", "APPS"],
            &rows,
        );
        Ok(())
    }
}
