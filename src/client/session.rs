//! The client connection as a sans-IO state machine: the upgrade request
//! out, the 101 in, then frames both ways through the protocol core's
//! client role (masking encoder, decoder, permessage-deflate).
//!
//! [`Session`] never touches a socket or a clock. [`super::Connection`]
//! drives it over a mio `TcpStream`; another runtime (or a test) can drive it
//! the same way: hand it received bytes, write out [`Session::output`].

use crate::protocol::deflate::{DeflateParams, Deflater, Inflater};
use crate::protocol::handshake::{client, HandshakeError};
use crate::protocol::{
    Client as ClientRole, CloseCode, CloseFrame, Decoder, DecoderConfig, Encoder, Event as Frame,
    Input, Message, OpCode, Parse, ProtocolError,
};

use super::{Config, Error};

/// Where a client connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// The TCP connect is under way (only [`super::Connection`] reports this).
    Connecting,
    /// The upgrade request is out (or queued); waiting for the 101.
    Handshaking,
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received; waiting for the close handshake
    /// to finish and the server to close TCP.
    Closing,
    /// Over: the socket should be (or has been) closed.
    Closed,
}

/// What the server sent, as the session hands it to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The handshake completed; messages may be sent.
    Open,
    /// A complete message (inflated and UTF-8-checked as needed), borrowed
    /// until the callback returns.
    Message(Message<'a>),
    /// A ping; the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The server's close frame. If it came first, our answer (same code) is
    /// already queued; either way nothing more will be sent.
    Close(CloseFrame<'a>),
}

/// The sending half of a client connection: frames go into a buffer that
/// the driver writes to the socket. Handed to the receive callback too, so
/// an answer can be queued while the message it answers is still borrowed.
#[derive(Debug)]
pub struct Sender {
    out: Vec<u8>,
    pos: usize,
    encoder: Encoder<ClientRole>,
    deflater: Option<Deflater>,
    compressed: Vec<u8>,
    threshold: usize,
    max_queue_bytes: usize,
    open: bool,
    close_sent: bool,
}

/// Output buffers larger than this are freed once written out (a one-off
/// large message does not pin its size for the connection's life).
const KEEP_BUFFER_BYTES: usize = 1 << 20;

impl Sender {
    /// Queues a message (compressed when permessage-deflate was agreed and it
    /// is at least [`Config::compression_threshold_bytes`] long).
    ///
    /// Fails when the connection is not open, or when the queue would pass
    /// [`Config::max_queue_bytes`] (nothing is queued then).
    pub fn send(&mut self, msg: Message<'_>) -> Result<(), Error> {
        self.check_open()?;
        let payload = msg.as_bytes();
        if self.queued_bytes() + payload.len() > self.max_queue_bytes {
            return Err(Error::queue_full(self.max_queue_bytes));
        }
        match self.deflater.as_mut() {
            Some(d) if payload.len() >= self.threshold => {
                self.compressed.clear();
                d.compress(payload, &mut self.compressed);
                self.encoder
                    .frame_with(&mut self.out, true, true, msg.opcode(), &self.compressed);
                if self.compressed.capacity() > KEEP_BUFFER_BYTES {
                    self.compressed = Vec::new();
                }
            }
            _ => self.encoder.frame(&mut self.out, msg.opcode(), payload),
        }
        Ok(())
    }

    /// Queues a ping with up to 125 bytes of application data (longer data
    /// is cut to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        let n = payload.len().min(125);
        self.encoder
            .frame(&mut self.out, OpCode::Ping, &payload[..n]);
        Ok(())
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123
    /// bytes). Messages received after this are dropped; the server's close
    /// frame is still reported.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.check_open()?;
        self.queue_close(code, reason);
        Ok(())
    }

    /// True between the handshake and the first close frame.
    pub fn is_open(&self) -> bool {
        self.open && !self.close_sent
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.out.len() - self.pos
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.is_open() {
            Ok(())
        } else {
            Err(Error::not_open())
        }
    }

    fn queue_close(&mut self, code: CloseCode, reason: &str) {
        self.encoder.close(&mut self.out, code, reason);
        self.close_sent = true;
    }
}

/// One client connection's protocol state, without IO.
///
/// ```
/// use edgews::client::{Config, Event, Session, State};
/// use edgews::protocol::{Message, OpCode, server_frame};
///
/// let mut s = Session::new("127.0.0.1:9001", "/", &Config::default());
/// assert!(s.output().starts_with(b"GET / HTTP/1.1\r\n"));
/// // A server would answer the key in the request; here we compute the answer.
/// let req = String::from_utf8(s.output().to_vec()).unwrap();
/// let key = req.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap();
/// let accept = edgews::protocol::handshake::accept_key(key.as_bytes());
/// let n = s.output().len();
/// s.advance(n);
/// let mut input = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {}\r\n\r\n", std::str::from_utf8(&accept).unwrap()
/// ).into_bytes();
/// input.extend_from_slice(&server_frame(OpCode::Text, b"hi"));
/// let mut got = Vec::new();
/// s.receive(&mut input, |ev, sender| {
///     if let Event::Message(m) = ev {
///         got.push(m.as_bytes().to_vec());
///         sender.send(m).unwrap(); // echo, masked
///     }
/// });
/// assert_eq!((s.state(), got), (State::Open, vec![b"hi".to_vec()]));
/// assert_eq!(s.output()[..2], [0x81, 0x82]); // text, masked, 2 bytes
/// ```
#[derive(Debug)]
pub struct Session {
    key: String,
    /// Subprotocols the caller asked for (in a `Sec-WebSocket-Protocol` header).
    protocols: Vec<String>,
    offer: Option<crate::protocol::deflate::DeflateOffer>,
    max_header_bytes: usize,
    /// The response head, kept until the 101 is complete.
    head: Vec<u8>,
    opened: bool,
    close_received: bool,
    /// Stop decoding: after the server's close frame, or after an error.
    discard_input: bool,
    closed: bool,
    decoder: Decoder<ClientRole>,
    dcfg: DecoderConfig,
    deflate: Option<DeflateParams>,
    inflater: Option<Inflater>,
    inflated: Vec<u8>,
    close_code: Option<CloseCode>,
    error: Option<Error>,
    sender: Sender,
}

impl Session {
    /// A session whose upgrade request for `path` on `host` (the `Host`
    /// header: `name:port`) is already queued in [`Session::output`].
    pub fn new(host: &str, path: &str, config: &Config) -> Session {
        let key = client::generate_key();
        let mut extra: Vec<(&str, &str)> = config
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let offer_value = config.deflate.map(|o| o.header_value());
        if let Some(v) = offer_value.as_deref() {
            extra.push(("Sec-WebSocket-Extensions", v));
        }
        let mut out = Vec::new();
        client::write_request(&mut out, host, path, &key, &extra);
        let protocols = config
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|(_, v)| v.split(','))
            .map(|p| p.trim().to_owned())
            .collect();
        Session {
            key,
            protocols,
            offer: config.deflate,
            max_header_bytes: config.max_header_bytes,
            head: Vec::new(),
            opened: false,
            close_received: false,
            discard_input: false,
            closed: false,
            decoder: Decoder::new(),
            dcfg: DecoderConfig {
                max_message_bytes: config.max_message_bytes,
                allow_rsv1: false,
            },
            deflate: None,
            inflater: None,
            inflated: Vec::new(),
            close_code: None,
            error: None,
            sender: Sender {
                out,
                pos: 0,
                encoder: Encoder::new(),
                deflater: None,
                compressed: Vec::new(),
                threshold: config.compression_threshold_bytes,
                max_queue_bytes: config.max_queue_bytes,
                open: false,
                close_sent: false,
            },
        }
    }

    /// Where the session is.
    pub fn state(&self) -> State {
        if self.closed {
            State::Closed
        } else if !self.opened {
            State::Handshaking
        } else if self.sender.close_sent || self.close_received {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Why the connection failed, if it did (kept after [`State::Closed`]).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// The code of the server's close frame, once received.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close_code
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Bytes waiting for the socket.
    pub fn output(&self) -> &[u8] {
        &self.sender.out[self.sender.pos..]
    }

    /// Marks `n` bytes of [`Session::output`] as written.
    pub fn advance(&mut self, n: usize) {
        let s = &mut self.sender;
        s.pos = (s.pos + n).min(s.out.len());
        if s.pos == s.out.len() {
            if s.out.capacity() > KEEP_BUFFER_BYTES {
                s.out = Vec::new();
            } else {
                s.out.clear();
            }
            s.pos = 0;
        } else if s.pos >= 64 << 10 && s.pos * 2 >= s.out.len() {
            s.out.drain(..s.pos);
            s.pos = 0;
        }
    }

    /// The server closed TCP (read returned 0).
    pub fn receive_eof(&mut self) {
        if !self.closed && !self.close_received && self.error.is_none() {
            self.error = Some(Error::abnormal());
        }
        self.closed = true;
    }

    /// The driver gave up on the connection (socket error, timeout): the
    /// session is over with `err`, unless it already failed or the close
    /// handshake was complete (then a reset or a server slow to close TCP
    /// changes nothing: both sides agreed to close).
    pub fn fail(&mut self, err: Error) {
        let handshake_done = self.sender.close_sent && self.close_received;
        if !self.closed && self.error.is_none() && !handshake_done {
            self.error = Some(err);
        }
        self.closed = true;
    }

    /// Handles bytes received from the server (the buffer is unmasked and
    /// decoded in place), calling `f` for every event. Anything the session
    /// answers by itself (pongs, the close reply, the close after a
    /// protocol error) is queued in [`Session::output`].
    pub fn receive(&mut self, data: &mut [u8], mut f: impl FnMut(Event<'_>, &mut Sender)) {
        if self.closed || self.discard_input {
            return;
        }
        if self.opened {
            self.decode(data, &mut f);
            return;
        }
        self.head.extend_from_slice(data);
        let used = match client::parse_response(&self.head, &self.key) {
            Ok(Parse::Complete((resp, used))) if used <= self.max_header_bytes => {
                if let Err(e) = self.agree(&resp) {
                    self.fail(Error::handshake(e));
                    return;
                }
                used
            }
            Ok(Parse::Complete(_)) => {
                self.fail(Error::headers_too_large(self.max_header_bytes));
                return;
            }
            Ok(Parse::Incomplete(_)) => {
                if self.head.len() > self.max_header_bytes {
                    self.fail(Error::headers_too_large(self.max_header_bytes));
                }
                return;
            }
            Err(e) => {
                self.fail(Error::handshake(e));
                return;
            }
        };
        self.opened = true;
        self.sender.open = true;
        let mut rest = std::mem::take(&mut self.head);
        rest.drain(..used);
        f(Event::Open, &mut self.sender);
        if !rest.is_empty() {
            self.decode(&mut rest, &mut f);
        }
    }

    /// Checks what the 101 agreed to and sets up permessage-deflate.
    fn agree(&mut self, resp: &client::Response) -> Result<(), HandshakeError> {
        if let Some(p) = &resp.protocol {
            if !self.protocols.iter().any(|want| want == p) {
                return Err(HandshakeError::subprotocol());
            }
        }
        let Some(answer) = resp.extensions.as_deref() else {
            return Ok(());
        };
        let Some(offer) = self.offer else {
            return Err(HandshakeError::extension(
                "an extension that was not offered",
            ));
        };
        let p = offer.accept(answer)?;
        self.deflate = Some(p);
        self.dcfg.allow_rsv1 = true;
        self.inflater = Some(Inflater::new(
            p.server_window_bits,
            p.server_no_context_takeover,
        ));
        self.sender.deflater = Some(Deflater::new(
            p.client_window_bits,
            p.client_no_context_takeover,
        ));
        Ok(())
    }

    fn decode(&mut self, data: &mut [u8], f: &mut impl FnMut(Event<'_>, &mut Sender)) {
        let mut input = Input::new(data);
        while !self.discard_input {
            let Session {
                decoder,
                dcfg,
                inflater,
                inflated,
                sender,
                close_received,
                close_code,
                discard_input,
                ..
            } = &mut *self;
            let frame = match decoder.decode(&mut input, dcfg) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    self.protocol_error(e);
                    return;
                }
            };
            match frame {
                Frame::Message(m) => {
                    if !sender.close_sent {
                        f(Event::Message(m), sender);
                    }
                }
                Frame::Compressed { binary, payload } => {
                    let inflater = inflater
                        .as_mut()
                        .expect("the decoder accepts RSV1 only once deflate is agreed");
                    inflated.clear();
                    let msg = match inflater.inflate(payload, inflated, dcfg.max_message_bytes) {
                        Ok(()) if binary => Ok(Message::Binary(&inflated[..])),
                        Ok(()) => simdutf8::basic::from_utf8(&inflated[..])
                            .map(Message::Text)
                            .map_err(|_| ProtocolError::invalid_utf8()),
                        Err(e) => Err(e),
                    };
                    match msg {
                        Ok(m) => {
                            if !sender.close_sent {
                                f(Event::Message(m), sender);
                            }
                        }
                        Err(e) => {
                            self.protocol_error(e);
                            return;
                        }
                    }
                    if inflated.capacity() > KEEP_BUFFER_BYTES {
                        *inflated = Vec::new();
                    }
                }
                Frame::Ping(payload) => {
                    if sender.queued_bytes() > sender.max_queue_bytes {
                        // Pings faster than we can write pongs (or a server
                        // that sends but does not read): the queue stays bounded.
                        self.overflow();
                        return;
                    }
                    if !sender.close_sent {
                        sender.encoder.frame(&mut sender.out, OpCode::Pong, payload);
                    }
                    f(Event::Ping(payload), sender);
                }
                Frame::Pong(payload) => f(Event::Pong(payload), sender),
                Frame::Close(frame) => {
                    if !sender.close_sent {
                        // Echo the code (RFC 6455 §5.5.1); none if there was none.
                        sender.queue_close(frame.code, "");
                    }
                    *close_received = true;
                    *close_code = Some(frame.code);
                    // Nothing may follow a close frame.
                    *discard_input = true;
                    f(Event::Close(frame), sender);
                }
            }
        }
    }

    /// More than `max_queue_bytes` wait for a server that does not read:
    /// close with 1008 and read nothing more.
    fn overflow(&mut self) {
        let limit = self.sender.max_queue_bytes;
        tracing::debug!(limit, "client: send queue over its limit, closing");
        if !self.sender.close_sent {
            self.sender
                .queue_close(CloseCode::POLICY_VIOLATION, "send queue over its limit");
        }
        if self.error.is_none() {
            self.error = Some(Error::queue_full(limit));
        }
        self.discard_input = true;
    }

    /// The server broke the protocol: close with the matching code (unless a
    /// close frame is out already) and read nothing more.
    fn protocol_error(&mut self, e: ProtocolError) {
        tracing::debug!(error = %e, "client: protocol error from the server");
        if !self.sender.close_sent {
            self.sender.queue_close(e.close_code(), &e.to_string());
        }
        if self.error.is_none() {
            self.error = Some(Error::protocol(e));
        }
        self.discard_input = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::DeflateOffer;
    use crate::protocol::handshake::accept_key;
    use crate::protocol::{server_frame, server_frame_with, Server};

    /// A session past a 101 with `extensions` (if any); returns what the
    /// events were, as strings.
    fn open(config: &Config, extensions: Option<&str>) -> Session {
        let mut s = Session::new("localhost:1", "/x", config);
        let req = String::from_utf8(s.output().to_vec()).unwrap();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = String::from_utf8(accept_key(key.as_bytes()).to_vec()).unwrap();
        let n = s.output().len();
        s.advance(n);
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        );
        if let Some(e) = extensions {
            head.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
        }
        head.push_str("\r\n");
        let mut opened = false;
        s.receive(&mut head.into_bytes(), |ev, _| opened = ev == Event::Open);
        assert!(opened || s.state() == State::Closed);
        s
    }

    /// Decodes what the session queued, as the server would.
    fn sent(s: &mut Session) -> Vec<(OpCode, Vec<u8>)> {
        let mut out = s.output().to_vec();
        let n = out.len();
        s.advance(n);
        let mut dec = Decoder::<Server>::new();
        let cfg = DecoderConfig {
            max_message_bytes: 1 << 20,
            allow_rsv1: true,
        };
        let mut input = Input::new(&mut out);
        let mut frames = Vec::new();
        while let Some(ev) = dec.decode(&mut input, &cfg).unwrap() {
            frames.push(match ev {
                Frame::Message(m) => (m.opcode(), m.as_bytes().to_vec()),
                Frame::Compressed { payload, .. } => (OpCode::Continuation, payload.to_vec()),
                Frame::Ping(p) => (OpCode::Ping, p.to_vec()),
                Frame::Pong(p) => (OpCode::Pong, p.to_vec()),
                Frame::Close(c) => (OpCode::Close, c.code.get().to_be_bytes().to_vec()),
            });
        }
        frames
    }

    #[test]
    fn pings_are_answered_and_closes_echoed() {
        let mut s = open(&Config::default(), None);
        let mut bytes = server_frame(OpCode::Ping, b"p1").to_vec();
        bytes.extend_from_slice(&server_frame(OpCode::Close, &[0x03, 0xe9]));
        bytes.extend_from_slice(&server_frame(OpCode::Text, b"after close"));
        let mut events = Vec::new();
        s.receive(&mut bytes, |ev, _| events.push(format!("{ev:?}")));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            sent(&mut s),
            [
                (OpCode::Pong, b"p1".to_vec()),
                (OpCode::Close, vec![0x03, 0xe9])
            ]
        );
        assert_eq!(s.state(), State::Closing);
        assert!(s.sender().send(Message::Text("late")).is_err());
        s.receive_eof();
        assert_eq!(s.state(), State::Closed);
        assert!(s.error().is_none());
        assert_eq!(s.close_code(), Some(CloseCode::GOING_AWAY));
    }

    #[test]
    fn protocol_errors_close_with_their_code() {
        for (frame, code) in [
            (vec![0x83, 0], 1002),                   // reserved opcode
            (vec![0x81, 0x81, 1, 2, 3, 4, 5], 1002), // masked server frame
            (vec![0xC1, 1, b'x'], 1002),             // RSV1 without deflate
            (vec![0x81, 1, 0xff], 1007),             // invalid UTF-8
            (vec![0x82, 126, 0xff, 0xff], 1009),     // over the limit
        ] {
            let cfg = Config::default().max_message_bytes(1000);
            let mut s = open(&cfg, None);
            let mut bytes = frame.clone();
            s.receive(&mut bytes, |ev, _| panic!("{ev:?}"));
            let e = s.error().expect("an error");
            assert!(e.is_protocol(), "{e}");
            assert_eq!(e.close_code().map(CloseCode::get), Some(code), "{frame:?}");
            assert_eq!(
                sent(&mut s),
                [(OpCode::Close, code.to_be_bytes().to_vec())],
                "{frame:?}"
            );
            // Nothing more is read; the session waits for the server's EOF.
            s.receive(&mut server_frame(OpCode::Text, b"x").to_vec(), |ev, _| {
                panic!("{ev:?}")
            });
            assert_eq!(s.state(), State::Closing);
        }
    }

    #[test]
    fn handshake_failures() {
        // An extension we did not offer.
        let s = open(&Config::default(), Some("permessage-deflate"));
        assert!(s.error().unwrap().is_handshake());
        assert_eq!(s.state(), State::Closed);
        // A head that never ends.
        let mut s = Session::new("h:1", "/", &Config::default().max_header_bytes(100));
        s.receive(&mut b"HTTP/1.1 101 OK\r\n".repeat(10), |_, _| {});
        assert!(s.error().unwrap().is_handshake());
        // EOF before the answer.
        let mut s = Session::new("h:1", "/", &Config::default());
        s.receive_eof();
        assert!(s.error().unwrap().is_abnormal());
    }

    #[test]
    fn deflate_both_ways() {
        let offer = DeflateOffer {
            client_max_window_bits: true,
            ..DeflateOffer::default()
        };
        let cfg = Config::default()
            .deflate(Some(offer))
            .compression_threshold_bytes(0);
        let mut s = open(
            &cfg,
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
        );
        let p = s.deflate().unwrap();
        assert_eq!(
            (p.client_window_bits, p.server_no_context_takeover),
            (10, true)
        );
        // A compressed message from the server arrives inflated.
        let text = "hello hello hello hello ".repeat(20);
        let mut z = Vec::new();
        Deflater::new(15, true).compress(text.as_bytes(), &mut z);
        let mut bytes = server_frame_with(OpCode::Text, true, &z).to_vec();
        let mut got = String::new();
        s.receive(&mut bytes, |ev, sender| {
            if let Event::Message(Message::Text(t)) = ev {
                got = t.to_owned();
                sender.send(Message::Text(t)).unwrap();
            }
        });
        assert_eq!(got, text);
        // Our echo is compressed, with our 10-bit window and context takeover.
        let frames = sent(&mut s);
        assert_eq!(frames.len(), 1);
        let mut plain = Vec::new();
        Inflater::new(10, false)
            .inflate(&frames[0].1, &mut plain, 1 << 20)
            .unwrap();
        assert_eq!(plain, text.as_bytes());
        // A deflate bomb stops at the limit with 1009.
        let cfg = cfg.max_message_bytes(1 << 16);
        let mut s = open(&cfg, Some("permessage-deflate"));
        let mut z = Vec::new();
        Deflater::new(15, true).compress(&vec![0u8; 1 << 20], &mut z);
        let mut bytes = server_frame_with(OpCode::Binary, true, &z).to_vec();
        s.receive(&mut bytes, |ev, _| panic!("{ev:?}"));
        assert_eq!(
            s.error().unwrap().close_code(),
            Some(CloseCode::MESSAGE_TOO_BIG)
        );
    }

    #[test]
    fn queue_limit() {
        let mut s = open(&Config::default().max_queue_bytes(100), None);
        s.sender().send(Message::Binary(&[0; 90])).unwrap();
        let e = s.sender().send(Message::Binary(&[0; 20])).unwrap_err();
        assert!(e.is_queue_full(), "{e}");
        let n = s.output().len();
        s.advance(n);
        s.sender().send(Message::Binary(&[0; 20])).unwrap();
        // Pings from a server that does not read our pongs: closed at the limit.
        let mut pings = server_frame(OpCode::Ping, &[7; 125]).to_vec().repeat(10);
        s.receive(&mut pings, |_, _| {});
        assert!(s.error().unwrap().is_queue_full());
        assert_eq!(s.state(), State::Closing);
        let mut more = server_frame(OpCode::Ping, b"x").to_vec();
        s.receive(&mut more, |ev, _| panic!("{ev:?}"));
        assert!(s.output().len() < 100 + 2 * 131 + 8 + 30);
    }
}
