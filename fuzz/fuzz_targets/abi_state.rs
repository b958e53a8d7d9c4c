//! See `shanhai_abi::fuzzing::state` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shanhai_abi::fuzzing::state(data));
