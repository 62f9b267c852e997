//! Building kernel records from monitor-common's `#[repr(C)]` structs, shared by the seed writer
//! and the pipeline target (each includes this file as a module).

/// The bytes of a record, as the kernel programs write it.
pub fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: T is a repr(C) monitor-common struct of integers and byte arrays.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// An all-zero record to fill in.
pub fn zeroed<T>() -> T {
    // SAFETY: only monitor-common's plain-old-data structs, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Copies `src` into `dst` (cut to fit); the length copied.
pub fn fill(dst: &mut [u8], src: &[u8]) -> u32 {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n as u32
}
