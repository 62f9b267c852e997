//! Static pod manifests as attribution reads them: `node::static_pods::parse` (a Pod or a
//! List/PodList, YAML or JSON). Properties: no panic; every pod has a name and a namespace;
//! its cluster name on a node ends with the node name.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use monitor::node::static_pods;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(pods) = static_pods::parse(text, Path::new("/etc/kubernetes/manifests/pod.yaml")) else { return };
    for pod in &pods {
        assert!(!pod.name.is_empty() && !pod.namespace.is_empty());
        let cluster_name = pod.pod_name_on("node-1");
        assert!(cluster_name.ends_with("node-1"));
        assert!(static_pods::find(&pods, &pod.namespace, &cluster_name, "node-1").is_some());
    }
});
