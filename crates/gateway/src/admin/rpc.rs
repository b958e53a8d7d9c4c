//! The admin API as JSON-RPC 2.0 over a Unix socket: one request (or batch)
//! per line, one response per line.
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `modules.list` | none | `{"modules": [...]}`, as `GET /admin/modules` |
//! | `modules.get` | `{name}` | one module |
//! | `modules.upload` | `{name, wasm_base64, signature?}` | `{name, version, outcome}` |
//! | `modules.delete` | `{name}` | `{name, version: null, outcome: "removed"}` |
//! | `modules.reload` | `{name}` | `{name, version, outcome}` |
//! | `canary.deploy` | `{name, wasm_base64, weight, signature?}` | `{name, outcome, stable, canary}` |
//! | `canary.get` | `{name}` | `{name, stable, canary, last_canary}` |
//! | `canary.promote` | `{name}` | `{name, outcome, stable, canary}` |
//! | `canary.rollback` | `{name}` | `{name, outcome, stable, canary}` |
//! | `config.get` | none | the config, secrets redacted |
//!
//! Errors use the standard codes (-32700 parse error, -32600 invalid
//! request, -32601 method not found, -32602 invalid params, -32603 internal
//! error) and three of our own: [`LOAD_FAILED`], [`UNKNOWN_MODULE`] and
//! [`CONFLICT`]. The
//! error's `data` holds the HTTP API's error `kind` and module.
//!
//! There is no token: the socket's file mode (0600) decides who may talk.

use std::sync::Arc;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Admin, AdminError, MAX_MODULE_BYTES};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// The module was refused; the previous version still serves.
pub(crate) const LOAD_FAILED: i64 = -32000;
/// No module of that name.
pub(crate) const UNKNOWN_MODULE: i64 = -32001;
/// The module's state does not allow the operation (no canary, no stable
/// version).
pub(crate) const CONFLICT: i64 = -32002;

/// The longest request line: a base64 module at the upload limit, plus room
/// for the rest of the request.
const MAX_LINE: usize = MAX_MODULE_BYTES / 3 * 4 + (1 << 20);

/// Accepts connections until told to stop, then waits for each connection
/// to finish the request it is handling.
pub(crate) async fn serve(
    listener: UnixListener,
    admin: Arc<Admin>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, admin.clone(), stop.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(stream: UnixStream, admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut read).take((MAX_LINE + 1) as u64);
        let received = tokio::select! {
            received = limited.read_until(b'\n', &mut line) => received,
            _ = stop.changed() => return,
        };
        match received {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.len() > MAX_LINE;
        let response = if too_long {
            Some(error(
                Value::Null,
                INVALID_REQUEST,
                format!("request line exceeds {MAX_LINE} bytes"),
                None,
            ))
        } else if line.trim_ascii().is_empty() {
            continue;
        } else {
            handle_line(&admin, &line).await
        };
        if let Some(response) = response {
            let mut bytes = response.to_string().into_bytes();
            bytes.push(b'\n');
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        if too_long {
            // The rest of that line cannot be told from the next request.
            return;
        }
    }
}

/// Answers one line: a request, or a batch of them. `None` when every
/// request was a notification.
pub(crate) async fn handle_line(admin: &Arc<Admin>, line: &[u8]) -> Option<Value> {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(err) => {
            return Some(error(
                Value::Null,
                PARSE_ERROR,
                format!("parse error: {err}"),
                None,
            ));
        }
    };
    match value {
        Value::Array(requests) if requests.is_empty() => Some(error(
            Value::Null,
            INVALID_REQUEST,
            "empty batch".into(),
            None,
        )),
        Value::Array(requests) => {
            let mut responses = Vec::new();
            for request in requests {
                responses.extend(handle_request(admin, request).await);
            }
            (!responses.is_empty()).then_some(Value::Array(responses))
        }
        request => handle_request(admin, request).await,
    }
}

async fn handle_request(admin: &Arc<Admin>, request: Value) -> Option<Value> {
    let Value::Object(mut request) = request else {
        return Some(error(
            Value::Null,
            INVALID_REQUEST,
            "a request is a JSON object".into(),
            None,
        ));
    };
    let id = request.remove("id");
    let id_ok = matches!(
        id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    );
    let method = match request.remove("method") {
        Some(Value::String(method)) => Some(method),
        _ => None,
    };
    let params = request.remove("params");
    let params_ok = matches!(params, None | Some(Value::Object(_) | Value::Array(_)));
    let version_ok = request.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let (Some(method), true, true, true) = (method, id_ok, params_ok, version_ok) else {
        return Some(error(
            id.filter(|_| id_ok).unwrap_or(Value::Null),
            INVALID_REQUEST,
            "expected {\"jsonrpc\": \"2.0\", \"method\": string, \"params\"?: object, \"id\"?: string or number}".into(),
            None,
        ));
    };
    let result = call(admin, &method, params).await;
    // A request without an id is a notification: it gets no answer.
    let id = id?;
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(failure) => error(id, failure.code, failure.message, failure.data),
    })
}

struct Failure {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl Failure {
    fn params(message: impl Into<String>) -> Self {
        Self {
            code: INVALID_PARAMS,
            message: message.into(),
            data: None,
        }
    }
}

impl From<AdminError> for Failure {
    fn from(err: AdminError) -> Self {
        let code = match &err {
            AdminError::BadName(_) | AdminError::BadRequest(_) | AdminError::TooLarge(_) => {
                INVALID_PARAMS
            }
            AdminError::UnknownModule(_) => UNKNOWN_MODULE,
            AdminError::LoadFailed { .. } | AdminError::CompiledRefused(_) => LOAD_FAILED,
            AdminError::Conflict { .. } => CONFLICT,
            AdminError::Io(_) => INTERNAL_ERROR,
        };
        Self {
            code,
            data: Some(json!({"error": err.kind(), "module": err.module()})),
            message: err.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    name: String,
    wasm_base64: String,
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryParams {
    name: String,
    wasm_base64: String,
    weight: f64,
    signature: Option<String>,
}

fn decode_wasm(wasm_base64: &str) -> Result<Vec<u8>, Failure> {
    if wasm_base64.len() > MAX_MODULE_BYTES / 3 * 4 + 4 {
        return Err(AdminError::TooLarge(super::MAX_MODULE_BYTES).into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(wasm_base64.trim())
        .map_err(|err| Failure::params(format!("wasm_base64: {err}")))
}

async fn call(admin: &Arc<Admin>, method: &str, params: Option<Value>) -> Result<Value, Failure> {
    match method {
        "modules.list" => {
            no_params(params)?;
            Ok(to_value(admin.list()))
        }
        "modules.get" => {
            let NameParams { name } = parse(params)?;
            Ok(to_value(admin.get(&name)?))
        }
        "modules.upload" => {
            let UploadParams {
                name,
                wasm_base64,
                signature,
            } = parse(params)?;
            let wasm = decode_wasm(&wasm_base64)?;
            Ok(to_value(admin.upload(&name, wasm, signature).await?))
        }
        "modules.delete" => {
            let NameParams { name } = parse(params)?;
            Ok(to_value(admin.delete(&name).await?))
        }
        "modules.reload" => {
            let NameParams { name } = parse(params)?;
            Ok(to_value(admin.reload(&name).await?))
        }
        "canary.deploy" => {
            let CanaryParams {
                name,
                wasm_base64,
                weight,
                signature,
            } = parse(params)?;
            let wasm = decode_wasm(&wasm_base64)?;
            Ok(to_value(
                admin.canary_deploy(&name, wasm, signature, weight).await?,
            ))
        }
        "canary.get" => {
            let NameParams { name } = parse(params)?;
            Ok(admin.get(&name)?.canary_view())
        }
        "canary.promote" => {
            let NameParams { name } = parse(params)?;
            Ok(to_value(admin.canary_promote(&name).await?))
        }
        "canary.rollback" => {
            let NameParams { name } = parse(params)?;
            Ok(to_value(admin.canary_rollback(&name).await?))
        }
        "config.get" => {
            no_params(params)?;
            Ok(admin.config())
        }
        _ => Err(Failure {
            code: METHOD_NOT_FOUND,
            message: format!(
                "no method `{method}`; methods: modules.list, modules.get, modules.upload, modules.delete, modules.reload, canary.deploy, canary.get, canary.promote, canary.rollback, config.get"
            ),
            data: None,
        }),
    }
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).expect("admin results serialise")
}

fn parse<T: DeserializeOwned>(params: Option<Value>) -> Result<T, Failure> {
    match params {
        Some(params @ Value::Object(_)) => {
            serde_json::from_value(params).map_err(|err| Failure::params(err.to_string()))
        }
        _ => Err(Failure::params("params must be an object")),
    }
}

fn no_params(params: Option<Value>) -> Result<(), Failure> {
    match params {
        None => Ok(()),
        Some(Value::Object(map)) if map.is_empty() => Ok(()),
        Some(Value::Array(items)) if items.is_empty() => Ok(()),
        Some(_) => Err(Failure::params("this method takes no params")),
    }
}

fn error(id: Value, code: i64, message: String, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "error": error, "id": id})
}
