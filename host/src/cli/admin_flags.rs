//! How the CLI verbs find the admin API: `--admin URL` or `SHOAL_ADMIN`
//! (default the local host), and `--token` or `SHOAL_TOKEN` (default the
//! local host's token file, if there is one).

use clap::Args;

use crate::admin::client::AdminClient;

#[derive(Args, Debug, Clone)]
pub(crate) struct AdminFlags {
    /// The admin API of the host to talk to.
    #[arg(
        long = "admin",
        value_name = "URL",
        env = "SHOAL_ADMIN",
        default_value = "http://127.0.0.1:7070"
    )]
    pub admin: String,

    /// The host's admin token (needed when its admin API is not on loopback).
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl AdminFlags {
    pub(crate) fn client(&self) -> AdminClient {
        let base = if self.admin.contains("://") {
            self.admin.clone()
        } else {
            format!("http://{}", self.admin)
        };
        let token = self.token.clone().or_else(|| {
            let path = crate::dirs::data_dir()?.join("token");
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
        });
        AdminClient::new(&base, token)
    }
}
