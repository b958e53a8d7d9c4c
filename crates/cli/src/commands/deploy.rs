//! `shanhai deploy`: upload a module to a running gateway.

use std::path::PathBuf;

use anyhow::Context;
use http::Method;

use crate::admin_client::{AdminClient, AdminToken, percent};

/// Upload a module to a running gateway through its admin API.
///
/// The gateway writes the file into its modules folder and loads it; the
/// new version serves as soon as it is loaded, and requests already running
/// finish on the old one. A module that fails to load is refused and the
/// old version keeps serving. When FILE.sig exists next to FILE (as written
/// by `shanhai sign`), it is sent as the module's signature.
///
/// With --canary PERCENT the module does not replace the stable version: it
/// takes PERCENT of the traffic while the gateway compares the two, rolls it
/// back by itself if it does worse, and waits for `shanhai canary promote`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The module (.wasm).
    file: PathBuf,
    /// The gateway's admin API, e.g. http://127.0.0.1:9090.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Module name, served at /NAME (default: FILE's name without .wasm).
    #[arg(long)]
    name: Option<String>,
    /// Deploy as a canary taking this share of the traffic (0.01 to 100).
    #[arg(long, value_name = "PERCENT")]
    canary: Option<f64>,
    #[command(flatten)]
    token: AdminToken,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let name = super::module_name_for(&args.file, args.name).with_context(|| {
        format!(
            "{}: cannot derive a module name; pass --name",
            args.file.display()
        )
    })?;
    let wasm =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut sig_path = args.file.clone().into_os_string();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    let mut headers = Vec::new();
    match std::fs::read_to_string(&sig_path) {
        Ok(signature) => headers.push(("x-shanhai-signature", signature.trim().to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", sig_path.display())),
    }
    let client = AdminClient::new(&args.to, &args.token)?;
    if let Some(weight) = args.canary {
        anyhow::ensure!(
            weight > 0.0 && weight <= 100.0,
            "--canary takes a percentage above 0 and at most 100"
        );
        let answer = client
            .call(
                Method::PUT,
                &format!("/admin/modules/{name}/canary?weight={weight}"),
                &headers,
                wasm,
            )
            .await
            .with_context(|| format!("deploying a canary of {name}"))?;
        println!(
            "canary of {name}: version {} takes {} of the traffic ({}); stable is {}",
            answer["canary"]["version"].as_str().unwrap_or("-"),
            percent(&answer["canary"]["weight_percent"]),
            answer["outcome"].as_str().unwrap_or("-"),
            answer["stable"].as_str().unwrap_or("-"),
        );
        return Ok(());
    }
    let answer = client
        .call(
            Method::PUT,
            &format!("/admin/modules/{name}"),
            &headers,
            wasm,
        )
        .await
        .with_context(|| format!("deploying {name}"))?;
    println!(
        "deployed {name}: version {} ({})",
        answer["version"].as_str().unwrap_or("-"),
        answer["outcome"].as_str().unwrap_or("-")
    );
    Ok(())
}
