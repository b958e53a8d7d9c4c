//! `shanhai deploy`: upload a module to a running gateway.

use std::path::{Path, PathBuf};

use anyhow::Context;
use http::Method;
use shanhai_gateway::compiled;
use shanhai_gateway::signing::signature_path;

use crate::admin_client::{AdminClient, AdminToken, percent};

/// Upload a module to a running gateway through its admin API.
///
/// The gateway writes the file into its modules folder and loads it; the
/// new version serves as soon as it is loaded, and requests already running
/// finish on the old one. A module that fails to load is refused and the
/// old version keeps serving. When FILE.sig exists next to FILE (as written
/// by `shanhai sign`), it is sent as the module's signature.
///
/// With --precompiled FOLDER, the code `shanhai compile --target` wrote
/// there for the gateway's architecture is sent first, so the gateway
/// loads the module without compiling it. Code the gateway refuses (no
/// trusted signature, another architecture, another engine layout) is
/// reported and the gateway compiles the module itself.
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
    /// Send the code compiled for the gateway by `shanhai compile --target
    /// ARCH --cache-dir FOLDER` (FILE.ISA.cwasm and its .sig).
    #[arg(long, value_name = "FOLDER")]
    precompiled: Option<PathBuf>,
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
    let sig_path = signature_path(&args.file);
    let mut headers = Vec::new();
    match std::fs::read_to_string(&sig_path) {
        Ok(signature) => headers.push(("x-shanhai-signature", signature.trim().to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", sig_path.display())),
    }
    let client = AdminClient::new(&args.to, &args.token)?;
    if let Some(folder) = &args.precompiled {
        send_compiled(&client, &args.file, &wasm, folder).await?;
    }
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

/// Sends the code compiled for the gateway's instruction set, if `folder`
/// holds it. A refusal is not an error: the gateway compiles the module.
async fn send_compiled(
    client: &AdminClient,
    file: &Path,
    wasm: &[u8],
    folder: &Path,
) -> anyhow::Result<()> {
    let config = client
        .call(Method::GET, "/admin/config", &[], Vec::new())
        .await
        .context("asking the gateway which code it runs")?;
    let isa = config["runtime"]["code_isa"]
        .as_str()
        .context("/admin/config names no runtime.code_isa: is the gateway older than this CLI?")?;
    let path = compiled::code_path(folder, file, isa);
    let (code, signature) = match (
        std::fs::read(&path),
        std::fs::read_to_string(signature_path(&path)),
    ) {
        (Ok(code), Ok(signature)) => (code, signature),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!(
                "warning: no compiled code for this gateway ({isa}) at {} or its .sig ({err}): the gateway compiles the module",
                path.display()
            );
            return Ok(());
        }
    };
    let started = std::time::Instant::now();
    let answer = client
        .call(
            Method::PUT,
            &format!("/admin/compiled/{}", compiled::sha256_hex(wasm)),
            &[("x-shanhai-signature", signature.trim().to_owned())],
            code,
        )
        .await;
    match answer {
        Ok(_) => println!(
            "sent compiled code {} ({isa}) in {:.1} s: the module loads without compiling",
            path.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(err) => eprintln!("warning: {err:#}; the gateway compiles the module instead"),
    }
    Ok(())
}
