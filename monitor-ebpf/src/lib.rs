#![no_std]
// The library target exists so that `monitor` can declare a build dependency on this crate
// (cargo then rebuilds the daemon when the kernel programs change).
