//! See `shanhai_abi::fuzzing::mqtt` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shanhai_abi::fuzzing::mqtt(data));
