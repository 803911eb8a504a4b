//! Streaming UTF-8 validation: a text message is checked piece by piece as
//! its bytes arrive, so invalid input fails on the first bad byte even in the
//! middle of a fragment (Autobahn 6.4.*), without keeping the bytes seen so far.
//!
//! The bulk of every piece goes through `simdutf8` (SIMD, picked at run time);
//! only a code point cut by a piece boundary (at most 3 bytes) is carried over.

use super::error::ProtocolError;

/// Incremental UTF-8 validator. Five bytes of state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Validates the next piece. Fails as soon as the bytes so far cannot be
    /// the start of valid UTF-8; a code point cut at the end is kept for the
    /// next piece.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), ProtocolError> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let need = sequence_len(self.partial[0]) - have;
            let take = need.min(piece.len());
            self.partial[have..have + take].copy_from_slice(&piece[..take]);
            let filled = have + take;
            match std::str::from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                // Still a valid prefix, but the piece ended before the code point did.
                Err(e) if e.error_len().is_none() => {
                    self.partial_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(ProtocolError::invalid_utf8()),
            }
            piece = &piece[take..];
        }
        if simdutf8::basic::from_utf8(piece).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(ProtocolError::invalid_utf8()),
        }
    }

    /// Checks that the text did not end inside a code point.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.partial_len == 0 {
            Ok(())
        } else {
            Err(ProtocolError::invalid_utf8())
        }
    }
}

/// Length of the sequence a valid leading byte starts (only called on the first
/// byte of a carried-over prefix, which simdutf8 already found plausible).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(data: &[u8], cuts: &[usize]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        let mut last = 0;
        for &c in cuts {
            v.feed(&data[last..c])?;
            last = c;
        }
        v.feed(&data[last..])?;
        v.finish()
    }

    #[test]
    fn every_split_of_valid_text() {
        let text = "aé€𝄞z\u{10FFFF}\u{0}κόσμε".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                feed_split(text, &[i, j]).unwrap();
            }
        }
    }

    #[test]
    fn bad_byte_at_every_position_fails_fast() {
        let text = "héllo wörld €𝄞".as_bytes();
        for pos in 0..text.len() {
            for bad in [0xFFu8, 0xC0, 0x80] {
                let mut data = text.to_vec();
                data[pos] = bad;
                if std::str::from_utf8(&data).is_ok() {
                    continue;
                }
                // Fed one byte at a time, the error must surface no later than the
                // end of the code point the bad byte breaks.
                let mut v = Utf8Validator::new();
                let failed_at = data
                    .iter()
                    .position(|b| v.feed(std::slice::from_ref(b)).is_err())
                    .or_else(|| v.finish().err().map(|_| data.len()));
                let failed_at = failed_at.expect("invalid text must fail");
                let valid = std::str::from_utf8(&data).unwrap_err().valid_up_to();
                assert!(failed_at <= valid + 3, "pos {pos}: failed at {failed_at}");
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // F4 90 can never start a valid code point (> U+10FFFF): fail at the second byte.
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xF4]).unwrap();
        assert!(v.feed(&[0x90]).is_err());
        // ED A0 is a surrogate.
        let mut v = Utf8Validator::new();
        v.feed(&[0xED]).unwrap();
        assert!(v.feed(&[0xA0]).is_err());
    }

    #[test]
    fn truncated_text_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert!(v.finish().is_err());
    }

    proptest! {
        #[test]
        fn matches_std_for_any_bytes_and_splits(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            prop_assert_eq!(feed_split(&data, &cuts).is_ok(), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_strings_pass(s in "\\PC*", cut in 0usize..200) {
            let b = s.as_bytes();
            let cut = cut.min(b.len());
            prop_assert!(feed_split(b, &[cut]).is_ok());
        }
    }
}
