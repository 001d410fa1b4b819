//! `shoal ui`: a one-time login link to the host's dashboard, printed
//! (or opened in a browser with `--open`). The link works once, for a
//! minute; it sets a session cookie and never carries the admin token.

use std::process::{Command, Stdio};

use clap::Args;
use serde::Deserialize;

use crate::cli::AdminFlags;

#[derive(Deserialize)]
struct Link {
    url: String,
    expires_in_secs: u64,
}

/// Print a one-time login link to the host's dashboard.
#[derive(Args, Debug)]
pub(crate) struct Ui {
    /// Open the link in the default browser (`xdg-open`), printing it too.
    #[arg(long)]
    open: bool,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Ui {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let client = self.admin.client()?;
        let link: Link = client.send_json("POST", "/v1/ui/login", "application/json", b"")?;
        println!("{}", link.url);
        let opened = self.open && open(&link.url);
        if opened {
            eprintln!("opened the dashboard in your browser");
        } else {
            if self.open {
                eprintln!("could not run `xdg-open`: open the link above in a browser");
            }
            eprintln!(
                "the link logs one browser in to the dashboard; it works once, within {} s",
                link.expires_in_secs
            );
        }
        Ok(())
    }
}

/// Whether `xdg-open` took the URL.
fn open(url: &str) -> bool {
    Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
