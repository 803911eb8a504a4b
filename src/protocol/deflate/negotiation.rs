//! Negotiating permessage-deflate (RFC 7692 §5, §7.1): the server picks
//! from the client's `Sec-WebSocket-Extensions` offers ([`negotiate`]); the
//! client makes one offer and checks the server's answer ([`DeflateOffer`]).
//!
//! Every offer is checked on its own: a parameter we do not know, one given
//! twice, or a value out of range declines that offer only, and the next one
//! is tried. The first acceptable offer wins.
//!
//! Window bits: zlib cannot compress raw deflate with a 256-byte window, so an
//! offer with `server_max_window_bits=8` is declined (answering 9 would break
//! the RFC: the server may not use a larger window than asked for). The other
//! direction is no problem: our inflater's window is never smaller than the
//! client's, so `client_max_window_bits=8` is accepted.

use std::fmt::Write;

use crate::protocol::handshake::HandshakeError;

/// How the server wants to compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Ask for no context takeover in both directions (the "shared" mode: no
    /// per-connection compression state at all).
    pub no_context_takeover: bool,
    /// Largest LZ77 window (9–15) the server compresses with.
    pub max_window_bits: u8,
    /// Largest window (9–15) the server asks clients to compress with, when
    /// they keep context and offer `client_max_window_bits` (it bounds the
    /// server's per-connection inflater).
    pub max_client_window_bits: u8,
}

/// What was agreed for one connection. The names are those of RFC 7692:
/// `server_*` is the server-to-client direction, `client_*` the other one,
/// whichever side holds the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// We reset our compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message (so ours may too).
    pub client_no_context_takeover: bool,
    /// Window bits we compress with (9–15).
    pub server_window_bits: u8,
    /// Largest window the client compresses with (8–15); our inflater uses at least this.
    pub client_window_bits: u8,
}

/// One parsed offer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Picks the first acceptable permessage-deflate offer among the values of
/// every `Sec-WebSocket-Extensions` header, under `policy`.
///
/// Returns the agreed parameters and the exact response header value, or
/// `None` to serve the connection uncompressed.
///
/// ```
/// use edgews::protocol::deflate::{negotiate, DeflatePolicy};
/// let shared = DeflatePolicy { no_context_takeover: true, max_window_bits: 15, max_client_window_bits: 15 };
/// let (params, answer) = negotiate(["permessage-deflate; client_max_window_bits"], shared).unwrap();
/// assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
/// assert!(params.server_no_context_takeover && params.client_no_context_takeover);
/// assert!(negotiate(["x-webkit-deflate-frame"], shared).is_none());
/// ```
pub fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    policy: DeflatePolicy,
) -> Option<(DeflateParams, String)> {
    headers
        .into_iter()
        .flat_map(split_outside_quotes::<','>)
        .filter_map(parse_offer)
        .find_map(|offer| accept(&offer, policy))
}

fn accept(offer: &Offer, policy: DeflatePolicy) -> Option<(DeflateParams, String)> {
    let max = policy.max_window_bits.clamp(9, 15);
    let server_window_bits = match offer.server_max_window_bits {
        Some(8) => return None,
        Some(bits) => bits.min(max),
        None => max,
    };
    let server_no_context_takeover = policy.no_context_takeover || offer.server_no_context_takeover;
    let client_no_context_takeover = policy.no_context_takeover;
    let mut answer = String::from("permessage-deflate");
    if server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() {
        let _ = write!(answer, "; server_max_window_bits={server_window_bits}");
    }
    // The client lets us limit its window: do so when we keep an inflater per
    // connection with a smaller window than the client would use. Never below
    // 9: zlib clients compress with 9 when told 8.
    let client_max = policy.max_client_window_bits.clamp(9, 15);
    let client_window_bits = match offer.client_max_window_bits {
        Some(offered) if !client_no_context_takeover && client_max < offered.unwrap_or(15) => {
            let _ = write!(answer, "; client_max_window_bits={client_max}");
            client_max
        }
        Some(Some(bits)) => bits,
        _ => 15,
    };
    Some((
        DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_window_bits,
            client_window_bits,
        },
        answer,
    ))
}

/// The one permessage-deflate offer a client makes (RFC 7692 §7.1), and the
/// check of the server's answer to it.
///
/// ```
/// use edgews::protocol::deflate::DeflateOffer;
/// let offer = DeflateOffer { client_max_window_bits: true, ..DeflateOffer::default() };
/// assert_eq!(offer.header_value(), "permessage-deflate; client_max_window_bits");
/// let p = offer.accept("permessage-deflate; client_max_window_bits=10").unwrap();
/// assert_eq!((p.client_window_bits, p.server_window_bits), (10, 15));
/// assert!(offer.accept("permessage-deflate; client_max_window_bits=8").is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateOffer {
    /// Ask the server to reset its compressor after every message
    /// (`server_no_context_takeover`): no window for us to keep.
    pub server_no_context_takeover: bool,
    /// Announce that we reset our compressor after every message
    /// (`client_no_context_takeover`). We then do so whatever the answer says.
    pub client_no_context_takeover: bool,
    /// Ask the server to compress with a window of at most `2^bits` bytes
    /// (`server_max_window_bits`, 8–15).
    pub server_max_window_bits: Option<u8>,
    /// Let the server cap our window (`client_max_window_bits` without a value).
    pub client_max_window_bits: bool,
}

impl DeflateOffer {
    /// The `Sec-WebSocket-Extensions` value carrying this offer.
    pub fn header_value(&self) -> String {
        let mut v = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            let _ = write!(v, "; server_max_window_bits={bits}");
        }
        if self.client_max_window_bits {
            v.push_str("; client_max_window_bits");
        }
        v
    }

    /// Checks the server's `Sec-WebSocket-Extensions` answer (every value of
    /// the header, joined with `,`) and gives what was agreed.
    ///
    /// The answer must be exactly one permessage-deflate element with valid,
    /// unrepeated parameters (RFC 7692 §5, §7.1): an extension we did not
    /// offer, a `client_max_window_bits` we did not allow, a window larger
    /// than we asked for, or a parameter we do not know fails the handshake.
    /// `client_max_window_bits=8` is refused too: zlib cannot compress raw
    /// deflate with a 256-byte window.
    pub fn accept(&self, answer: &str) -> Result<DeflateParams, HandshakeError> {
        let mut elements = split_outside_quotes::<','>(answer);
        let element = elements
            .next()
            .ok_or(HandshakeError::extension("empty extension list"))?;
        if elements.next().is_some() {
            return Err(HandshakeError::extension("more than one extension"));
        }
        let name = split_outside_quotes::<';'>(element).next().unwrap_or("");
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            return Err(HandshakeError::extension(
                "an extension that was not offered",
            ));
        }
        let answer = parse_offer(element).ok_or(HandshakeError::extension(
            "invalid permessage-deflate parameters",
        ))?;
        let server_window_bits = match (answer.server_max_window_bits, self.server_max_window_bits)
        {
            (Some(got), Some(asked)) if got > asked => {
                return Err(HandshakeError::extension(
                    "server_max_window_bits larger than offered",
                ))
            }
            (Some(got), _) => got,
            // Without an answer the server may use any window: ours is the largest.
            (None, _) => 15,
        };
        let client_window_bits = match answer.client_max_window_bits {
            None => 15,
            Some(_) if !self.client_max_window_bits => {
                return Err(HandshakeError::extension(
                    "client_max_window_bits that was not offered",
                ))
            }
            Some(None) => {
                return Err(HandshakeError::extension(
                    "client_max_window_bits without a value",
                ))
            }
            Some(Some(8)) => {
                return Err(HandshakeError::extension(
                    "client_max_window_bits=8 (zlib's smallest window is 9 bits)",
                ))
            }
            Some(Some(bits)) => bits,
        };
        Ok(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_window_bits,
            client_window_bits,
        })
    }
}

/// Parses one `permessage-deflate; a; b=c` element; `None` for another
/// extension or an invalid offer.
fn parse_offer(element: &str) -> Option<Offer> {
    let mut parts = split_outside_quotes::<';'>(element);
    let name = parts.next()?;
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut offer = Offer::default();
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        let bits = |v: Option<&str>| -> Option<u8> {
            let v = v?;
            // RFC 7692 §7.1.2: 1*DIGIT without leading zeros, 8 to 15.
            if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.parse().ok().filter(|b| (8..=15).contains(b))
        };
        match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover"
                if value.is_none() && !offer.server_no_context_takeover =>
            {
                offer.server_no_context_takeover = true;
            }
            "client_no_context_takeover"
                if value.is_none() && !offer.client_no_context_takeover =>
            {
                offer.client_no_context_takeover = true;
            }
            "server_max_window_bits" if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(bits(value)?);
            }
            "client_max_window_bits" if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match value {
                    None => None,
                    Some(_) => Some(bits(value)?),
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Removes the quotes (and backslash escapes) of a quoted-string value.
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        None => Some(v),
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            // Window bits never need escapes; a value that has them is invalid anyway.
            (!inner.contains('\\') && !inner.contains('"')).then_some(inner)
        }
    }
}

/// Splits on `SEP` outside double quotes, trimming, skipping empty parts.
fn split_outside_quotes<const SEP: char>(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == SEP && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHARED: DeflatePolicy = DeflatePolicy {
        no_context_takeover: true,
        max_window_bits: 15,
        max_client_window_bits: 15,
    };
    const DEDICATED: DeflatePolicy = DeflatePolicy {
        no_context_takeover: false,
        max_window_bits: 15,
        max_client_window_bits: 15,
    };

    fn answer(offer: &str, policy: DeflatePolicy) -> Option<String> {
        negotiate([offer], policy).map(|(_, a)| a)
    }

    #[test]
    fn shared_mode_asks_for_no_context_takeover_both_ways() {
        let (p, a) = negotiate(["permessage-deflate"], SHARED).unwrap();
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_window_bits: 15,
                client_window_bits: 15,
            }
        );
    }

    #[test]
    fn dedicated_mode_keeps_context() {
        let (p, a) = negotiate(["permessage-deflate; client_max_window_bits"], DEDICATED).unwrap();
        assert_eq!(a, "permessage-deflate");
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        // The client may still ask us not to keep context.
        let (p, a) = negotiate(
            ["permessage-deflate; server_no_context_takeover"],
            DEDICATED,
        )
        .unwrap();
        assert_eq!(a, "permessage-deflate; server_no_context_takeover");
        assert!(p.server_no_context_takeover);
    }

    #[test]
    fn window_bits() {
        let (p, a) =
            negotiate(["permessage-deflate; server_max_window_bits=9"], DEDICATED).unwrap();
        assert_eq!(a, "permessage-deflate; server_max_window_bits=9");
        assert_eq!(p.server_window_bits, 9);
        // A smaller server window caps the client's window when it lets us.
        let small = DeflatePolicy {
            no_context_takeover: false,
            max_window_bits: 11,
            max_client_window_bits: 11,
        };
        let (p, a) = negotiate(["permessage-deflate; client_max_window_bits"], small).unwrap();
        assert_eq!(a, "permessage-deflate; client_max_window_bits=11");
        assert_eq!((p.server_window_bits, p.client_window_bits), (11, 11));
        let (p, _) = negotiate(["permessage-deflate; server_max_window_bits=13"], small).unwrap();
        assert_eq!(p.server_window_bits, 11);
        // The client announces its own window.
        let (p, a) =
            negotiate(["permessage-deflate; client_max_window_bits=10"], DEDICATED).unwrap();
        assert_eq!(
            (p.client_window_bits, a.as_str()),
            (10, "permessage-deflate")
        );
        // Compressor and inflater windows apart: the client's limit follows the inflater.
        let apart = DeflatePolicy {
            no_context_takeover: false,
            max_window_bits: 9,
            max_client_window_bits: 12,
        };
        let (p, a) = negotiate(["permessage-deflate; client_max_window_bits"], apart).unwrap();
        assert_eq!(a, "permessage-deflate; client_max_window_bits=12");
        assert_eq!((p.server_window_bits, p.client_window_bits), (9, 12));
        // A client that announces a larger window than we keep is told ours…
        let (p, a) = negotiate(["permessage-deflate; client_max_window_bits=14"], apart).unwrap();
        assert_eq!(a, "permessage-deflate; client_max_window_bits=12");
        assert_eq!(p.client_window_bits, 12);
        // …a smaller one keeps its own, unanswered.
        let (p, a) = negotiate(["permessage-deflate; client_max_window_bits=10"], apart).unwrap();
        assert_eq!(a, "permessage-deflate");
        assert_eq!(p.client_window_bits, 10);
        // A client that cannot be limited may use 15: the inflater must too.
        let (p, _) = negotiate(["permessage-deflate"], apart).unwrap();
        assert_eq!(p.client_window_bits, 15);
        // 8 for the server's window cannot be honoured with zlib: declined.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=8", DEDICATED),
            None
        );
        // 8 for the client is fine.
        assert!(answer("permessage-deflate; client_max_window_bits=8", SHARED).is_some());
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_is_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; unknown_param",
        ] {
            assert_eq!(answer(bad, SHARED), None, "{bad}");
            let two = format!("{bad}, permessage-deflate; client_no_context_takeover");
            assert!(answer(&two, SHARED).is_some(), "fallback after {bad}");
        }
    }

    #[test]
    fn several_offers_headers_and_quoting() {
        let headers = [
            "foo, bar; baz=\"a,b\"",
            "PerMessage-Deflate ; server_max_window_bits = \"10\"",
        ];
        let (p, a) = negotiate(headers, DEDICATED).unwrap();
        assert_eq!(p.server_window_bits, 10);
        assert_eq!(a, "permessage-deflate; server_max_window_bits=10");
        // Autobahn 13.7: the first acceptable offer wins.
        let offers = "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
            server_no_context_takeover; server_max_window_bits=9, permessage-deflate; \
            client_no_context_takeover; client_max_window_bits; server_no_context_takeover, \
            permessage-deflate; client_no_context_takeover; client_max_window_bits";
        let (p, _) = negotiate([offers], SHARED).unwrap();
        assert_eq!(p.server_window_bits, 9);
        assert!(negotiate(std::iter::empty(), SHARED).is_none());
        // An unterminated quote runs to the end of the header: nothing is acceptable.
        let open = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
        assert!(negotiate([open], SHARED).is_none());
        assert!(negotiate([""], SHARED).is_none());
    }

    const AUTOBAHN_CLIENT: DeflateOffer = DeflateOffer {
        server_no_context_takeover: false,
        client_no_context_takeover: true,
        server_max_window_bits: None,
        client_max_window_bits: true,
    };

    #[test]
    fn client_offer_and_answers() {
        assert_eq!(
            AUTOBAHN_CLIENT.header_value(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
        let all = DeflateOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(10),
            client_max_window_bits: false,
        };
        assert_eq!(
            all.header_value(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
        // Our own server's answers are accepted by our client.
        for policy in [SHARED, DEDICATED] {
            let (want, answer) = negotiate([all.header_value().as_str()], policy).unwrap();
            assert_eq!(all.accept(&answer).unwrap(), want);
        }
        // The hint holds whatever the answer says.
        let p = AUTOBAHN_CLIENT.accept("permessage-deflate").unwrap();
        assert!(p.client_no_context_takeover && !p.server_no_context_takeover);
        assert_eq!((p.server_window_bits, p.client_window_bits), (15, 15));
        let p = AUTOBAHN_CLIENT
            .accept("Permessage-Deflate; client_max_window_bits=\"9\"; server_max_window_bits=12")
            .unwrap();
        assert_eq!((p.server_window_bits, p.client_window_bits), (12, 9));
    }

    #[test]
    fn client_refuses_bad_answers() {
        let plain = DeflateOffer::default();
        for (offer, bad) in [
            (plain, ""),
            (plain, "x-webkit-deflate-frame"),
            (plain, "permessage-deflate, permessage-deflate"),
            (plain, "permessage-deflate; unknown"),
            (
                plain,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ),
            (plain, "permessage-deflate; server_max_window_bits=16"),
            (plain, "permessage-deflate; client_max_window_bits=10"),
            (
                AUTOBAHN_CLIENT,
                "permessage-deflate; client_max_window_bits",
            ),
            (
                AUTOBAHN_CLIENT,
                "permessage-deflate; client_max_window_bits=8",
            ),
            (
                DeflateOffer {
                    server_max_window_bits: Some(10),
                    ..plain
                },
                "permessage-deflate; server_max_window_bits=11",
            ),
        ] {
            let err = offer.accept(bad).unwrap_err();
            assert_eq!(err.reason_label(), "server_response", "{bad}");
            assert!(err.to_string().contains("Extensions"), "{bad}: {err}");
        }
    }
}
