#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vid::fuzzing::run("amf0", data));
