//! See `shanhai_gateway::fuzzing::ws_codec` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shanhai_gateway::fuzzing::ws_codec(data));
