//! `shanhai status`: what a running gateway serves.

use http::Method;

use crate::admin_client::{AdminClient, AdminToken, percent};

/// List the modules a running gateway serves, from its admin API: name,
/// version, kind, idle instances, canary and the last load error; and the
/// modules being compiled.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The gateway's admin API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
    admin: String,
    #[command(flatten)]
    token: AdminToken,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin, &args.token)?;
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
    let mut rows =
        vec![["NAME", "VERSION", "KIND", "IDLE", "CANARY", "LAST ERROR"].map(String::from)];
    for module in answer["modules"].as_array().into_iter().flatten() {
        let canary = &module["canary"];
        let canary = if canary.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{}@{}",
                text(&canary["version"]),
                percent(&canary["weight_percent"])
            )
        };
        rows.push([
            text(&module["name"]),
            text(&module["version"]),
            text(&module["kind"]),
            text(&module["pool"]["idle"]),
            canary,
            text(&module["last_error"]),
        ]);
    }
    for loading in answer["loading"].as_array().into_iter().flatten() {
        eprintln!(
            "loading {}{}: {} for {} ms ({} bytes)",
            text(&loading["name"]),
            if loading["canary"] == true {
                " (canary)"
            } else {
                ""
            },
            text(&loading["phase"]),
            text(&loading["elapsed_ms"]),
            text(&loading["bytes"]),
        );
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row[..5].iter().zip(widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(&row[5]);
        println!("{}", line.trim_end());
    }
    Ok(())
}
