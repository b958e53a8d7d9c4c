//! `shanhai canary`: inspect, promote or roll back a module's canary.

use anyhow::Context;
use http::Method;

use crate::admin_client::{AdminClient, AdminToken};

/// Inspect, promote or roll back the canary of a module on a running
/// gateway (start one with `shanhai deploy FILE --canary PERCENT`).
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
    /// The gateway's admin API.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:9090"
    )]
    admin: String,
    #[command(flatten)]
    token: AdminToken,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Show the canary, both versions' figures over the window, and how the
    /// last canary ended.
    Show {
        /// The module.
        name: String,
    },
    /// Make the canary the stable version (its file replaces the module's).
    Promote {
        /// The module.
        name: String,
    },
    /// Stop the canary; the stable version takes all the traffic.
    Rollback {
        /// The module.
        name: String,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin, &args.token)?;
    match args.action {
        Action::Show { name } => {
            let answer = client
                .call(
                    Method::GET,
                    &format!("/admin/modules/{name}/canary"),
                    &[],
                    Vec::new(),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Action::Promote { name } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("/admin/modules/{name}/canary/promote"),
                    &[],
                    Vec::new(),
                )
                .await
                .with_context(|| format!("promoting the canary of {name}"))?;
            println!(
                "{name}: version {} is now stable",
                answer["stable"].as_str().unwrap_or("-")
            );
        }
        Action::Rollback { name } => {
            let answer = client
                .call(
                    Method::DELETE,
                    &format!("/admin/modules/{name}/canary"),
                    &[],
                    Vec::new(),
                )
                .await
                .with_context(|| format!("rolling back the canary of {name}"))?;
            println!(
                "{name}: canary rolled back; version {} serves all traffic",
                answer["stable"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(())
}
