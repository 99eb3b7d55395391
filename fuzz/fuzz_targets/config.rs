#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_fuzz::config_round_trips(data));
