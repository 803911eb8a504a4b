//! Streaming UTF-8 validation agrees with std on the whole input, however it is cut.
#![no_main]

use edgews::protocol::utf8::Utf8Validator;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, text)) = data.split_first() else {
        return;
    };
    let mut v = Utf8Validator::new();
    let step = usize::from(cuts % 7) + 1;
    let mut ok = true;
    for piece in text.chunks(step) {
        if v.feed(piece).is_err() {
            ok = false;
            break;
        }
    }
    ok = ok && v.finish().is_ok();
    assert_eq!(ok, std::str::from_utf8(text).is_ok());
});
