//! `shoal logs NAME [--follow]`: an app's recent guest output.

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
        self.admin
            .client()?
            .logs(&self.name, self.follow, |line| println!("{line}"))
    }
}
