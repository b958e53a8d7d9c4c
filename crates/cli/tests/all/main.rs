//! Integration tests: real guests built with the Go toolchain and the Rust
//! wasm target, a real `shanhai` process on 127.0.0.1, a real HTTP client.
//! One test binary, as in wasmtime's `tests/all`.

#![allow(unreachable_pub, missing_docs)]

mod admin;
mod browser;
mod canary;
mod chat;
mod cli;
mod dashboard;
mod examples;
mod exhaustion;
mod hostile;
mod mqtt;
mod openapi;
mod precompiled;
mod reload;
mod sandbox;
mod signing;
mod startup;
mod state;
mod state_examples;
mod tcp;
mod timer;
mod util;
mod ws;
mod wsclient;
