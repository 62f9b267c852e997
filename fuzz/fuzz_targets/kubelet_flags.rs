//! Kubelet flags as installers write them: environment files (systemd's grammar, with
//! continuations and multi-line quotes), a variable's value split into words, argument vectors
//! (`parse_args`), and whole systemd units (`ServiceUnit::from_texts`, the input used as the unit
//! and as every environment file it names) as `Kubelet::load` reads them. Properties: no panic;
//! every env value's line exists; flag names never hold `=` nor start with a dash.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use monitor::node::{
    kubelet::{is_sensitive_flag, parse_args, parse_words, Flag},
    systemd_unit::{env_file_assignments, split_value, ServiceUnit},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    for (key, value, line) in env_file_assignments(text) {
        assert!(value.is_empty() || (line >= 1 && line <= lines), "line {line} of {lines}");
        assert!(!key.is_empty());
        check(&parse_args(&split_value(&value), &key));
    }
    // The unit path of `Kubelet::load`.
    let files = vec![(PathBuf::from("/etc/systemd/system/kubelet.service"), Ok(text.to_string()))];
    let unit = ServiceUnit::from_texts("kubelet.service", files, |p: &Path| vec![(p.to_path_buf(), Ok(text.to_string()))]);
    for command in &unit.exec_start {
        check(&parse_words(command.args.iter().map(|w| (w.text.as_str(), w.origin.as_str()))));
    }
    // /proc/<pid>/cmdline: NUL-separated.
    let argv: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
    check(&parse_args(&argv, "cmdline"));
});

fn check(flags: &[Flag]) {
    for flag in flags {
        assert!(!flag.name.contains('=') && !flag.name.starts_with('-'), "flag name {:?}", flag.name);
        let _ = is_sensitive_flag(&flag.name);
    }
}
