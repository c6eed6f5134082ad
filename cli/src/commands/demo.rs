//! `regionsync demo`: the main job on embedded defaults (`crate::tools::demo`),
//! or with `--ha` three node processes under a real etcd
//! (`crate::tools::demo_ha`). Fails unless every node ends with the same
//! regions.

use std::path::PathBuf;

use clap::Args;

use crate::tools::{demo, demo_ha};

#[derive(Args)]
pub struct DemoCommand {
    /// Where the nodes keep their stores (a temporary directory if absent).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Instead: three `regionsync node` processes under a real etcd
    /// (Debian's etcd-server), the leader killed under load, alternately
    /// with SIGKILL and SIGTERM, and a table of each failover.
    #[arg(long)]
    pub ha: bool,
    /// Failovers of `--ha`.
    #[arg(long, default_value_t = 4, requires = "ha")]
    pub kills: usize,
}

impl DemoCommand {
    /// Run the demo; an error unless the nodes agree.
    pub async fn run(self) -> anyhow::Result<()> {
        let agreed = if self.ha {
            demo_ha::run(self.data_dir, self.kills).await?
        } else {
            demo::run(self.data_dir).await?
        };
        anyhow::ensure!(agreed, "the nodes' digests differ");
        Ok(())
    }
}
