//! `regionsync status`: a running node's status JSON, as GET /status
//! answers it, checked to be status JSON and printed.

use anyhow::{Context, bail};
use clap::Args;
use regionsync_harness::admin_client;

#[derive(Args)]
pub struct StatusCommand {
    /// The node's admin address (host:port).
    #[arg(long)]
    pub admin: String,
}

impl StatusCommand {
    /// Ask the node and print its answer.
    pub async fn run(self) -> anyhow::Result<()> {
        let admin = &self.admin;
        let (code, body) = admin_client::request(admin, "GET", "/status", &[], None).await?;
        if code != 200 {
            bail!(
                "{admin} answered {code}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        let status: regionsync::status::Status =
            serde_json::from_slice(&body).context("the status answer is not status JSON")?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        Ok(())
    }
}
