//! config.json bytes → parse → validate → translate (see `mypod_sandbox::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mypod_sandbox::fuzz::spec(data));
