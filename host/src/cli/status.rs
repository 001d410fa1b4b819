//! `shoal status`: is a host up, and what does it hold.

use clap::Args;

use crate::cli::AdminFlags;

/// Show the state of a host.
#[derive(Args, Debug)]
pub(crate) struct Status {
    #[command(flatten)]
    admin: AdminFlags,
}

impl Status {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let health = self.admin.client()?.health()?;
        let field = |k: &str| {
            health
                .get(k)
                .map(|v| v.to_string().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        println!("status    {}", field("status"));
        println!("version   {}", field("version"));
        println!("uptime    {}s", field("uptime_secs"));
        println!("apps      {}", field("apps"));
        println!("ingress   {}", field("ingress"));
        println!("admin     {}", self.admin.url());
        println!("data dir  {}", field("data_dir"));
        Ok(())
    }
}
