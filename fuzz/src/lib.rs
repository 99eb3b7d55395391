//! The properties the fuzz targets check, one function per target, each
//! total over any bytes: it returns when the property holds and panics (the
//! finding) when it does not. Kept apart from the targets so that the
//! regression inputs in `regressions/` can be replayed by `cargo test` too.

use std::io::BufRead;

use logbook_log::{
    EventBody, FormatError, Utf8Lines, decode_body, event_from_json, from_jsonl, to_jsonl,
};

/// A stored body: the fast decoder answers exactly what the derived serde
/// decoder answers (its documented invariant), and a body it decodes encodes
/// to canonical bytes that decode to the same body.
pub fn decode_body_agrees(data: &[u8]) {
    let fast = decode_body(data);
    let derived = serde_json::from_slice::<EventBody>(data);
    match (&fast, &derived) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "fast and derived decoders disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("fast decoder: {a:?}, derived: {b:?}"),
    }
    if let Ok(body) = fast {
        let canonical = body.to_canonical();
        let again = decode_body(&canonical).expect("a canonical body decodes");
        assert_eq!(again, body, "a canonical body decodes to itself");
        assert_eq!(
            again.to_canonical(),
            canonical,
            "canonical bytes are a fixed point"
        );
    }
}

/// An export: read as JSONL the way `logbook import` reads it (lines, UTF-8
/// checked per line), every line that parses is byte for byte the line its
/// event writes, parses the same as a JSON object, and its body is a stored
/// body that decodes to itself.
pub fn jsonl_round_trips(data: &[u8]) {
    let mut lines = Utf8Lines::new(data);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let Ok(event) = from_jsonl(text) else {
            continue;
        };
        assert_eq!(to_jsonl(&event), text, "an accepted line is canonical");
        let value: serde_json::Value =
            serde_json::from_str(text).expect("an accepted line is JSON");
        match event_from_json(&value) {
            Ok(same) => assert_eq!(same, event, "the two parsers agree"),
            Err(FormatError::NotCanonical { .. }) => {
                panic!("a canonical line refused as a JSON object")
            }
            Err(e) => panic!("a canonical line refused as a JSON object: {e}"),
        }
        let body = event.event.body.to_canonical();
        assert_eq!(decode_body(&body).as_ref(), Ok(&event.event.body));
    }
}

/// A configuration file: parsing never panics, and a configuration it
/// accepts, written back as TOML, is read again as the same configuration.
pub fn config_round_trips(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = logbook_config::Config::from_toml(text, "fuzz.toml") else {
        return;
    };
    let written = toml::to_string(&config).expect("an accepted configuration serializes");
    let again = logbook_config::Config::from_toml(&written, "written.toml")
        .unwrap_or_else(|e| panic!("a written configuration is refused: {e}\n{written}"));
    assert_eq!(
        serde_json::to_value(&again).expect("to JSON"),
        serde_json::to_value(&config).expect("to JSON"),
        "a configuration changed when written and read again"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every kept input (the seeds and what the fuzzers once found) holds.
    #[test]
    fn kept_inputs_hold() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let targets: [(&str, fn(&[u8])); 3] = [
            ("decode_body", super::decode_body_agrees),
            ("jsonl", super::jsonl_round_trips),
            ("config", super::config_round_trips),
        ];
        for (target, check) in targets {
            for dir in ["seeds", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.expect("a directory entry").path();
                    check(&std::fs::read(&path).expect("a kept input"));
                }
            }
        }
    }
}
