//! Waits until it is killed, whatever its arguments: stands in for a node's process whose
//! command line is what a test is about (`kubeadm join --token ...`), without running it.

fn main() {
    loop {
        std::thread::park();
    }
}
