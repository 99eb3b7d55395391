#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_fuzz::decode_body_agrees(data));
