//! The catalogue of every rule the monitor can raise, assembled here, at the crate's edge,
//! where every rule set is known (the audit's, the detectors', the monitor's about itself):
//! what `node-runtime-monitor rules` prints and docs/FINDINGS.md holds.

use crate::{
    audit, detectors,
    findings::{Origin, Rule},
    health,
};

/// Every rule with the stage that raises it (the `source` of its findings), in report order.
pub fn rules() -> Vec<(Rule, Origin)> {
    let audit = audit::rules::RULES.iter().chain([&audit::NODE_READ_STALLED]).map(|r| (*r, Origin::Audit));
    let detectors = detectors::rules().into_iter().map(|r| (r, Origin::Detectors));
    audit.chain(detectors).chain([(health::previous_run::MONITOR_RESTARTED, Origin::Monitor)]).collect()
}

/// The catalogue as a Markdown table.
pub fn markdown() -> String {
    let mut out = String::from("| rule | severity | source | title | what it means |\n|---|---|---|---|---|\n");
    for (rule, source) in rules() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            rule.id,
            rule.severity,
            source.as_str(),
            rule.title,
            rule.description.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_catalogue_is_the_one_the_code_has() {
        let doc = include_str!("../../docs/FINDINGS.md");
        assert!(
            doc.ends_with(&super::markdown()),
            "docs/FINDINGS.md is stale: regenerate its table with `node-runtime-monitor rules`"
        );
    }

    #[test]
    fn rule_ids_are_unique() {
        let rules = super::rules();
        let mut ids: Vec<&str> = rules.iter().map(|(r, _)| r.id).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "duplicate rule ids");
        assert!(count >= 25, "{count} rules");
    }
}
