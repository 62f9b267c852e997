//! Static pod manifests as attribution and the audit read them: `node::static_pods::parse` (a
//! Pod or a List/PodList, YAML or JSON). Properties: no panic; every pod has a name and a
//! namespace; its cluster name on a node ends with the node name; every image's `file:line`
//! points at a line of the file; an error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor::node::static_pods;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/etc/kubernetes/manifests/pod.yaml");
    let pods = match static_pods::parse(text, path) {
        Ok(pods) => pods,
        Err(err) => {
            assert_eq!(err.path(), path);
            assert!(err.to_string().starts_with("/etc/kubernetes/manifests/pod.yaml:"), "{err}");
            return;
        }
    };
    let lines = text.lines().count();
    for pod in &pods {
        let _ = pod.is_control_plane();
        for c in &pod.containers {
            if let Some((_, line)) = c.image_source.rsplit_once(':') {
                let line: usize = line.parse().expect("a line number");
                assert!(line >= 1 && line <= lines, "{}: the file has {lines} lines", c.image_source);
            }
        }
        assert!(!pod.name.is_empty() && !pod.namespace.is_empty());
        let cluster_name = pod.pod_name_on("node-1");
        assert!(cluster_name.ends_with("node-1"));
        assert!(static_pods::find(&pods, &pod.namespace, &cluster_name, "node-1").is_some());
    }
});
