#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vid::fuzzing::run("codec", data));
