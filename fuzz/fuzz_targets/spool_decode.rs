//! A spool file, as a crash, a full disk or another program may leave it:
//! reading it never panics; a file that checks out is exactly what the
//! exporter writes for what it describes, and its payload inflates to its
//! recorded length or is named damaged, never read past that length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nvidia_license_server_exporter::harness::{
    decode_spool_file, encode_spool_file, merge_batches,
};

fuzz_target!(|data: &[u8]| {
    let Ok((meta, payload)) = decode_spool_file(data) else {
        return;
    };
    assert_eq!(meta.stored_len, data.len() as u64);
    assert_eq!(encode_spool_file(&meta, payload), data);
    if let Ok(merged) = merge_batches(&[(meta, payload)]) {
        assert_eq!(merged.len() as u64, meta.raw_len);
    }
});
