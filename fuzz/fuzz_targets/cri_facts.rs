//! Recorded CRI answers (`check --cri-replay`, the audit's CRI seam): `CriFacts::from_json`,
//! then what rules ask of each socket (runtime identity, `SystemdCgroup`, sandbox image).
//! Properties: no panic; what parses re-serialises to JSON that parses to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::node::cri_facts::CriFacts;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(facts) = CriFacts::from_json(text) else { return };
    for socket in &facts.sockets {
        let _ = (socket.runtime(), socket.answers(), socket.systemd_cgroup(), socket.sandbox_image());
        assert!(facts.socket(&socket.endpoint).is_some());
    }
    let json = serde_json::to_string(&facts).expect("facts serialise");
    let again = CriFacts::from_json(&json).expect("serialised facts parse");
    assert_eq!(serde_json::to_string(&again).expect("facts serialise"), json);
});
