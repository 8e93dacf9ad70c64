#![no_main]

#[allow(dead_code)]
#[path = "../../src/bin/mirror-relay/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "../../src/bin/mirror-relay/fill.rs"]
mod fill;
#[allow(dead_code)]
#[path = "../../src/bin/mirror-relay/streams.rs"]
mod streams;
#[path = "../relay_entries.rs"]
mod relay_entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_entries::relay_streams(data));
