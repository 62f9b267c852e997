//! `bench`: workloads measured with no probes, with this monitor and with bpftrace.
//! (being written)

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("benchmarks are not written yet")
}
