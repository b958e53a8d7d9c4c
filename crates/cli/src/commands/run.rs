//! `shanhai run`: invoke a module once from the shell.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use shanhai_gateway::{Config, HttpTrigger, ModuleRegistry};
use shanhai_runtime::Runtime;

/// Invoke a module once, exactly as the gateway would, and print the result.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  shanhai run hello.wasm                      GET /hello, print the body
  shanhai run hello.wasm --path '/hello?name=edge' -i
  shanhai run add.wasm add 2.5 3.7            call a numeric export → 6.2
  echo -n abc | shanhai run hello.wasm upper  call a byte function with stdin")]
pub(crate) struct Args {
    /// The module file.
    file: PathBuf,
    /// A function to call instead of the HTTP handler: a numeric export
    /// (arguments follow) or an SDK byte function (input from --data or stdin).
    function: Option<String>,
    /// Arguments of a numeric export.
    #[arg(allow_negative_numbers = true)]
    args: Vec<f64>,
    /// Request path for the HTTP handler (default: /NAME).
    #[arg(long)]
    path: Option<String>,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Request body or byte-function input; `@FILE` reads a file, `-` stdin.
    #[arg(long, short)]
    data: Option<String>,
    /// Request headers, `Name: value`.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print the status line and headers before the body.
    #[arg(long, short = 'i')]
    include: bool,
    /// Config variables for the module, `KEY=VALUE`.
    #[arg(long = "var")]
    vars: Vec<String>,
    /// Compile-cache folder.
    #[arg(long, default_value = ".shanhai/cache")]
    cache_dir: PathBuf,
    /// Compile without reading or writing the compile cache.
    #[arg(long)]
    no_cache: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| shanhai_gateway::config::is_module_name(s))
        .context("the file name must be NAME.wasm with letters, digits, '-' or '_' in NAME")?
        .to_owned();
    let mut config = Config::default();
    config.server.cache_dir = if args.no_cache {
        PathBuf::new()
    } else {
        args.cache_dir.clone()
    };
    config.server.modules_dir = args.file.parent().map(PathBuf::from).unwrap_or_default();
    let section = config.modules.entry(name.clone()).or_default();
    section.file = Some(PathBuf::from(
        args.file.file_name().context("no file name")?,
    ));
    for var in &args.vars {
        let (key, value) = var.split_once('=').context("--var takes KEY=VALUE")?;
        section.vars.insert(key.to_owned(), value.to_owned());
    }
    let runtime = Runtime::new(config.runtime_config())?;
    let registry = Arc::new(ModuleRegistry::default());
    registry
        .load_names(&runtime, &config, std::slice::from_ref(&name))
        .await;
    if let Some(reason) = registry.failures().get(&name) {
        bail!("{}: {reason}", args.file.display());
    }
    let module = registry.get(&name).context("module did not load")?;

    let (method, uri, body) = match &args.function {
        Some(function) if module.numeric_export(function).is_some() => {
            let body = serde_json::to_vec(&args.args)?;
            (
                "POST".to_owned(),
                format!("/api/exec/{name}/{function}"),
                body,
            )
        }
        Some(function) => {
            if !args.args.is_empty() {
                bail!(
                    "`{function}` is not a numeric export of {name}; pass its input with --data or stdin"
                );
            }
            let input = read_data(args.data.as_deref().unwrap_or("-"))?;
            (
                "POST".to_owned(),
                format!("/api/exec/{name}/{function}"),
                input,
            )
        }
        None => {
            let body = args
                .data
                .as_deref()
                .map(read_data)
                .transpose()?
                .unwrap_or_default();
            (
                args.method.clone(),
                args.path.clone().unwrap_or_else(|| format!("/{name}")),
                body,
            )
        }
    };
    let mut request = http::Request::builder().method(method.as_str()).uri(&uri);
    for header in &args.headers {
        let (key, value) = header
            .split_once(':')
            .context("--header takes `Name: value`")?;
        request = request.header(key.trim(), value.trim());
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .context("building the request")?;
    let remote = SocketAddr::from(([127, 0, 0, 1], 0));
    let response = HttpTrigger::new(registry).handle(request, remote).await;

    let status = response.status();
    let mut stdout = std::io::stdout().lock();
    if args.include {
        writeln!(stdout, "HTTP/1.1 {status}")?;
        for (key, value) in response.headers() {
            writeln!(
                stdout,
                "{key}: {}",
                String::from_utf8_lossy(value.as_bytes())
            )?;
        }
        writeln!(stdout)?;
    }
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    stdout.write_all(&body)?;
    if args.function.is_some() && !body.ends_with(b"\n") {
        writeln!(stdout)?;
    }
    stdout.flush()?;
    if !status.is_success() {
        bail!("module answered {status}");
    }
    Ok(())
}

fn read_data(data: &str) -> anyhow::Result<Vec<u8>> {
    if data == "-" {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("reading stdin")?;
        Ok(input)
    } else if let Some(path) = data.strip_prefix('@') {
        std::fs::read(path).with_context(|| format!("reading {path}"))
    } else {
        Ok(data.as_bytes().to_vec())
    }
}
