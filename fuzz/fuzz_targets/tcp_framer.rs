//! See `shanhai_gateway::fuzzing::tcp_framer` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shanhai_gateway::fuzzing::tcp_framer(data));
