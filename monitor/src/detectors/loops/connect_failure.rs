//! Connect-failure loops: the same client failing to reach a runtime socket or the API server
//! (or etcd, kubelet, controller-manager, scheduler ports) N times within a window. The finding
//! names the endpoint and the errno, and, for a runtime socket, compares it with the runtime
//! endpoint kubelet is configured with. Connects to any other endpoint are not looked at;
//! successful connects to a runtime socket are noted on the client's run by the restart-loop
//! detector, not here.

use std::time::Instant;

use super::{
    LoopDetector, is_control_endpoint,
    window::{occurrences_text, secs},
};
use crate::{
    detectors::{Actor, AuditContext},
    events::{Connect, SocketAddress, errno_name},
    findings::{Finding, Rule, Severity},
};

pub const CONNECT_FAILURE_LOOP: Rule = Rule {
    id: "connect-failure-loop",
    severity: Severity::Critical,
    title: "A client keeps failing to reach the container runtime or the API server",
    description: "Repeated failed connects to a runtime socket or an API server port: the endpoint is missing, refused or not the one the node runs.",
};

impl LoopDetector {
    pub(super) fn connect_failure(
        &mut self,
        connect: &Connect,
        actor: &Actor,
        facts: &AuditContext,
        now: Instant,
    ) -> Option<Finding> {
        if !is_control_endpoint(&connect.address) {
            return None;
        }
        let key = format!("{}|{}|{}", actor.key, connect.address, connect.errno);
        let occurrences = self.connect_failures.entry(&key);
        let count = occurrences.push(now, self.config.connect_window);
        if count < self.config.connect_failures || !occurrences.reported.due(now, self.config.refresh) {
            return None;
        }
        let address = connect.address.to_string();
        if !self.failing_subjects.admit(&actor.key, &address, now, self.config.connect_window) {
            return Some(super::exec_failure::folded_caller_finding(&CONNECT_FAILURE_LOOP, actor, "endpoints", &address, self.config.connect_window));
        }
        let client = format!("{} (pid {})", connect.task.comm, connect.task.tgid);
        let errno = errno_name(connect.errno);
        let mut finding = Finding::new(
            &CONNECT_FAILURE_LOOP,
            address.clone(),
            format!(
                "{} cannot reach {address} ({errno}): {} failed connects in {}",
                actor.display,
                occurrences_text(count),
                secs(self.config.connect_window)
            ),
        )
        .evidence(
            "kernel: syscalls:sys_exit_connect",
            format!("connect to {address} failed with {errno}; last client {client}"),
        );
        let mut remediation = String::new();
        if let SocketAddress::Unix { path, .. } = &connect.address {
            match &facts.runtime_endpoint {
                Some(endpoint) if !endpoint.ends_with(path.as_str()) => {
                    finding = finding.evidence(
                        "kubelet configuration",
                        format!("the node's runtime endpoint is {endpoint}, not {path}"),
                    );
                    remediation = format!(
                        "Runtime endpoint mismatch: {} expects {path} but this node runs the runtime at {endpoint}. Point the client at {endpoint}, or install and start the runtime it expects; remove leftover shims of a runtime this node does not use.",
                        connect.task.comm
                    );
                }
                Some(endpoint) => {
                    remediation = format!("The configured runtime endpoint {endpoint} does not answer: start the runtime (and check its logs).");
                }
                None => {}
            }
        } else if connect.errno == libc::ECONNREFUSED {
            remediation = "Nothing listens on the API server port: see the control-plane static pods' findings (restart loops, OOM kills) for why.".to_string();
        }
        if remediation.is_empty() {
            remediation = format!("Make {address} reachable, or stop {} from using it.", connect.task.comm);
        }
        Some(finding.remediation(remediation))
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        detectors::loops::test_support::*,
        events::{Connect, Event, SocketAddress},
    };

    #[test]
    fn connect_failures_to_a_runtime_socket_name_the_configured_endpoint() {
        let mut h = Harness::new();
        h.facts.runtime_endpoint = Some("unix:///run/containerd/containerd.sock".into());
        let connect = |tgid| {
            Event::Connect(Connect {
                task: task(tgid, "kubekey"),
                address: SocketAddress::Unix { path: "/var/run/cri-dockerd.sock".into(), is_abstract: false },
                errno: libc::ENOENT,
                asynchronous: false,
            })
        };
        h.feed(connect(1), &host(), 0);
        h.feed(connect(2), &host(), 1);
        let findings = h.feed(connect(3), &host(), 2);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "connect-failure-loop");
        assert!(findings[0].remediation.starts_with("Runtime endpoint mismatch"), "{}", findings[0].remediation);
        // Connects to other sockets are not this detector's business.
        let other = Event::Connect(Connect {
            task: task(9, "curl"),
            address: SocketAddress::Unix { path: "/var/run/nscd/socket".into(), is_abstract: false },
            errno: libc::ENOENT,
            asynchronous: false,
        });
        for at in 0..10 {
            assert!(h.feed(other.clone(), &host(), at).is_empty());
        }
    }

    #[test]
    fn a_connect_whose_outcome_is_not_known_is_no_failure() {
        // kubelet's non-blocking connects to the API server, reported with the call's own
        // EINPROGRESS (the TCP state program down): no loop, however many. Refused ones are.
        let mut h = Harness::new();
        let connect = |errno| {
            Event::Connect(Connect {
                task: task(7, "kubelet"),
                address: SocketAddress::Inet { ip: "10.0.0.1".parse().expect("ip"), port: 6443 },
                errno,
                asynchronous: false,
            })
        };
        for at in 0..20 {
            assert!(h.feed(connect(libc::EINPROGRESS), &host(), at).is_empty(), "EINPROGRESS at {at}");
        }
        let findings: Vec<_> = (20..23).flat_map(|at| h.feed(connect(libc::ECONNREFUSED), &host(), at)).collect();
        assert_eq!(findings.iter().map(|f| (f.rule, f.subject.as_str())).collect::<Vec<_>>(), [("connect-failure-loop", "10.0.0.1:6443")]);
    }
}
