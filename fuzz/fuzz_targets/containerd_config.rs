//! containerd's `config.toml`: `ConfigFile::parse`, then what each containerd release makes of
//! it (`ContainerdConfig::effective`: schema, `SystemdCgroup`, sandbox image, ignored tables),
//! its socket address and the `file:line` locators. Properties: no panic; a syntax error never
//! quotes the file; every reported line exists in the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor::node::{
    containerd_config::{ConfigFile, ContainerdConfig, Release, line_of_key},
    parse_error::scrub,
};

const RELEASES: [&str; 6] = ["1.5.9", "1.6.20", "1.7.6", "1.7.30", "2.0.2", "2.1.0"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    let _ = Release::parse(text);
    let path = Path::new("/etc/containerd/config.toml");
    let file = match ConfigFile::parse(path, text.to_string()) {
        Ok(file) => file,
        Err(err) => {
            assert!(err.message.chars().count() <= 200);
            assert!(!err.message.contains('\n'));
            let _ = (err.to_string(), scrub(text));
            return;
        }
    };
    let _ = (file.declared_version(), file.locate("cri", "SystemdCgroup"));
    if let Some(line) = line_of_key(text, "runtimes", "SystemdCgroup") {
        assert!(line >= 1 && line <= lines, "line {line} of a {lines}-line file");
    }
    let config = ContainerdConfig { files: vec![file], problems: Vec::new() };
    let _ = (config.declared_version(), config.grpc_address());
    for release in RELEASES.iter().map(|r| Release::parse(r)).chain([None]) {
        let effective = config.effective(release);
        for ignored in &effective.ignored {
            let _ = (&ignored.source, &ignored.table, ignored.keys.len());
        }
        let _ = format!("{effective:?}");
    }
});
