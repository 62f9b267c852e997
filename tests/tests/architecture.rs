//! docs/ARCHITECTURE.md is true to the code: no stage imports one its table does not allow
//! (an import against the data flow fails here, naming the file), every stage of the code is
//! in the table, and the module list is the one the code has. `NRM_BLESS=1` rewrites the
//! module list (`NRM_BLESS=1 cargo nextest run -p monitor-tests --test architecture`).

use std::collections::{BTreeMap, BTreeSet};

use monitor_tests::architecture::{module_list, source_dir, stage_imports};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ARCHITECTURE.md");
const BEGIN: &str = "<!-- module list: generated, see tests/tests/architecture.rs -->\n";
const END: &str = "<!-- end of module list -->";

/// The table's rows: stage -> the stages it may import.
fn allowed(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let stage = cells.get(1)?.trim_matches('`').to_string();
            let may = cells.get(3)?.split(',').map(|s| s.trim().trim_matches('`').to_string()).filter(|s| !s.is_empty() && s != "nothing").collect();
            Some((stage, may))
        })
        .collect()
}

#[test]
fn no_stage_imports_against_the_flow() {
    let doc = std::fs::read_to_string(DOC).expect("docs/ARCHITECTURE.md");
    let allowed = allowed(&doc);
    assert!(allowed.len() >= 10, "the table of stages was not found in docs/ARCHITECTURE.md: {allowed:?}");
    let mut wrong = Vec::new();
    for (stage, imports) in stage_imports(&source_dir()) {
        let Some(may) = allowed.get(&stage) else {
            wrong.push(format!("stage `{stage}` is not in the table of docs/ARCHITECTURE.md"));
            continue;
        };
        for (import, file) in imports {
            if !may.contains(&import) {
                wrong.push(format!("monitor/src/{} imports `{import}`, which `{stage}` may not", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the architecture:\n{}", wrong.join("\n"));
}

#[test]
fn the_rule_is_enforced_on_a_wrong_import() {
    // The check itself must be able to fail: an import of the daemon from findings is refused.
    let doc = std::fs::read_to_string(DOC).expect("docs/ARCHITECTURE.md");
    let allowed = allowed(&doc);
    assert!(!allowed["findings"].contains("daemon") && !allowed["node"].contains("audit") && !allowed["events"].contains("attribution"));
    let imports = monitor_tests::architecture::crate_imports("use crate::{daemon::run, findings::Finding};");
    assert!(imports.iter().any(|i| !allowed["findings"].contains(i) && i != "findings"));
}

#[test]
fn the_module_list_is_the_one_the_code_has() {
    let doc = std::fs::read_to_string(DOC).expect("docs/ARCHITECTURE.md");
    let start = doc.find(BEGIN).expect("module list start marker") + BEGIN.len();
    let end = doc.find(END).expect("module list end marker");
    let generated = module_list(&source_dir());
    if std::env::var_os("NRM_BLESS").is_some() {
        std::fs::write(DOC, format!("{}{}{}", &doc[..start], generated, &doc[end..])).expect("write doc");
        return;
    }
    assert_eq!(&doc[start..end], generated, "docs/ARCHITECTURE.md's module list is stale: NRM_BLESS=1 regenerates it");
}
