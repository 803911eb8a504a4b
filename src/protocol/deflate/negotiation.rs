//! Negotiating permessage-deflate (RFC 7692 §5, §7.1) from the client's
//! `Sec-WebSocket-Extensions` offers.
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

/// What was agreed for one connection.
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
}
