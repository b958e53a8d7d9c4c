//! `shanhai status`: what a running gateway serves.

use http::Method;

use crate::admin_client::AdminClient;

/// List the modules a running gateway serves, from its admin API: name,
/// version, kind, idle instances and the last load error.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The gateway's admin API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// Bearer token of the admin API.
    #[arg(long, env = "SHANHAI_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin, args.token)?;
    let answer = client
        .call(Method::GET, "/admin/modules", &[], Vec::new())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut rows = vec![["NAME", "VERSION", "KIND", "IDLE", "LAST ERROR"].map(String::from)];
    for module in answer["modules"].as_array().into_iter().flatten() {
        rows.push([
            text(&module["name"]),
            text(&module["version"]),
            text(&module["kind"]),
            text(&module["pool"]["idle"]),
            text(&module["last_error"]),
        ]);
    }
    let mut widths = [0; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row[..4].iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(&row[4]);
        println!("{}", line.trim_end());
    }
    Ok(())
}
