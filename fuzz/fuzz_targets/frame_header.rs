//! Frame header parsing: no panic, and a parsed header re-encodes to the same bytes
//! when the input used the minimal length encoding.
#![no_main]

use edgews::protocol::{FrameHeader, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parse::Complete((h, len))) = FrameHeader::parse(data) {
        assert!(len <= 14 && len <= data.len());
        let mut out = [0u8; 14];
        let n = h.encode(&mut out);
        let minimal = n == len;
        if minimal {
            assert_eq!(FrameHeader::parse(&out[..n]), Ok(Parse::Complete((h, n))));
            // Encoding keeps everything but RSV2/RSV3, which parse rejects anyway.
            assert_eq!(&out[..n], &data[..n]);
        }
    }
});
