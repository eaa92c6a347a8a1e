//! The MQTT 3.1.1 packets this host sends and understands, as bytes.
//!
//! Pure: no I/O, so it is tested without a broker. Only the subset a
//! telemetry client needs: CONNECT (with a last will), CONNACK, PUBLISH
//! (QoS 0 out; QoS 0 and 1 in), PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP
//! and DISCONNECT. Anything from the broker is bounds-checked; a malformed
//! packet is an error, never a panic.

/// Largest packet accepted from the broker. Commands are a few bytes; a
/// bigger PUBLISH (someone publishing a file to our command topic) is
/// skipped without being buffered ([`Incoming::Oversized`]), and any other
/// oversized packet is malformed.
pub const MAX_INCOMING: usize = 64 * 1024;

/// Why CONNACK refused us (MQTT 3.1.1 §3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefused {
    Protocol,
    ClientId,
    Unavailable,
    BadCredentials,
    NotAuthorized,
    Other(u8),
}

impl ConnectRefused {
    pub fn from_code(code: u8) -> ConnectRefused {
        match code {
            1 => ConnectRefused::Protocol,
            2 => ConnectRefused::ClientId,
            3 => ConnectRefused::Unavailable,
            4 => ConnectRefused::BadCredentials,
            5 => ConnectRefused::NotAuthorized,
            c => ConnectRefused::Other(c),
        }
    }
}

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectRefused::Protocol => f.write_str("it does not speak MQTT 3.1.1"),
            ConnectRefused::ClientId => {
                f.write_str("it rejected the client id (set mqtt.client_id)")
            }
            ConnectRefused::Unavailable => f.write_str("the server is unavailable"),
            ConnectRefused::BadCredentials => {
                f.write_str("bad username or password (check mqtt.username and mqtt.password)")
            }
            ConnectRefused::NotAuthorized => f.write_str(
                "not authorized (the broker needs credentials or an ACL entry for this user: \
                 check mqtt.username and mqtt.password)",
            ),
            ConnectRefused::Other(c) => write!(f, "return code {c}"),
        }
    }
}

/// A packet from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    ConnAck {
        code: u8,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        /// Set for QoS 1, which we must acknowledge.
        packet_id: Option<u16>,
    },
    PubAck,
    SubAck {
        granted: Vec<u8>,
    },
    PingResp,
    /// A PUBLISH larger than [`MAX_INCOMING`]: only its head was read. The
    /// `used` that [`parse`] returns with it runs past the bytes given; the
    /// caller discards the rest of the packet as it arrives.
    Oversized {
        topic: String,
        /// The whole packet's size, bytes.
        len: usize,
        /// Set for QoS 1: it must still be acknowledged.
        packet_id: Option<u16>,
    },
    /// Any other packet type (ignored).
    Other(u8),
}

/// A malformed or oversized packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed packet from the broker: {}", self.0)
    }
}

/// The last will the broker publishes if we vanish.
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub retain: bool,
}

pub struct Connect<'a> {
    pub client_id: &'a str,
    pub keep_alive_s: u16,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s[..len]);
}

fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

pub fn connect(c: &Connect<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02; // clean session
    if let Some(w) = &c.will {
        flags |= 0x04; // will flag, QoS 0
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.username.is_some() {
        flags |= 0x80;
        if c.password.is_some() {
            flags |= 0x40;
        }
    }
    body.push(flags);
    body.extend_from_slice(&c.keep_alive_s.to_be_bytes());
    put_str(&mut body, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        put_str(&mut body, w.topic.as_bytes());
        put_str(&mut body, w.payload);
    }
    if let Some(u) = c.username {
        put_str(&mut body, u.as_bytes());
        if let Some(p) = c.password {
            put_str(&mut body, p.as_bytes());
        }
    }
    packet(0x10, &body)
}

/// A QoS 0 PUBLISH.
pub fn publish(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 2);
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    packet(if retain { 0x31 } else { 0x30 }, &body)
}

pub fn puback(packet_id: u16) -> Vec<u8> {
    packet(0x40, &packet_id.to_be_bytes())
}

/// SUBSCRIBE to one filter at QoS 1.
pub fn subscribe(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    put_str(&mut body, filter.as_bytes());
    body.push(1);
    packet(0x82, &body)
}

pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0]
}

pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0]
}

/// Takes one whole packet off the front of `buf`: `Ok(None)` when more
/// bytes are needed, `Ok(Some((packet, used)))` otherwise.
pub fn parse(buf: &[u8]) -> Result<Option<(Incoming, usize)>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len: usize = 0;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Malformed("remaining length longer than 4 bytes".into()));
        }
    }
    let kind = first >> 4;
    if len > MAX_INCOMING {
        if kind != 3 {
            return Err(Malformed(format!(
                "{len} bytes is more than the {MAX_INCOMING} accepted"
            )));
        }
        return oversized_publish(first, &buf[i..], len).map(|head| {
            head.map(|(topic, packet_id)| {
                let packet = Incoming::Oversized {
                    topic,
                    len: i + len,
                    packet_id,
                };
                (packet, i + len)
            })
        });
    }
    let Some(body) = buf.get(i..i + len) else {
        return Ok(None);
    };
    let used = i + len;
    let packet = match kind {
        2 => {
            let code = *body
                .get(1)
                .ok_or_else(|| Malformed("short CONNACK".into()))?;
            Incoming::ConnAck { code }
        }
        3 => {
            let qos = (first >> 1) & 0x03;
            let tlen = body
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or_else(|| Malformed("short PUBLISH".into()))?;
            let topic = body
                .get(2..2 + tlen)
                .ok_or_else(|| Malformed("PUBLISH topic past the end".into()))?;
            let topic = String::from_utf8(topic.to_vec())
                .map_err(|_| Malformed("PUBLISH topic is not UTF-8".into()))?;
            let mut at = 2 + tlen;
            let packet_id = if qos > 0 {
                let id = body
                    .get(at..at + 2)
                    .ok_or_else(|| Malformed("PUBLISH without packet id".into()))?;
                at += 2;
                Some(u16::from_be_bytes([id[0], id[1]]))
            } else {
                None
            };
            Incoming::Publish {
                topic,
                payload: body.get(at..).unwrap_or_default().to_vec(),
                packet_id,
            }
        }
        4 => Incoming::PubAck,
        9 => Incoming::SubAck {
            granted: body.get(2..).unwrap_or_default().to_vec(),
        },
        13 => Incoming::PingResp,
        other => Incoming::Other(other),
    };
    Ok(Some((packet, used)))
}

/// The topic and packet id of an oversized PUBLISH whose body (`len`
/// bytes) starts at `body`; `Ok(None)` until they have arrived.
fn oversized_publish(
    first: u8,
    body: &[u8],
    len: usize,
) -> Result<Option<(String, Option<u16>)>, Malformed> {
    let qos = (first >> 1) & 0x03;
    let Some(tlen) = body
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return Ok(None);
    };
    let head_len = 2 + tlen + if qos > 0 { 2 } else { 0 };
    if head_len > len {
        return Err(Malformed("PUBLISH topic past the end".into()));
    }
    let Some(head) = body.get(..head_len) else {
        return Ok(None);
    };
    let topic = String::from_utf8_lossy(&head[2..2 + tlen]).into_owned();
    let packet_id = (qos > 0).then(|| u16::from_be_bytes([head[2 + tlen], head[3 + tlen]]));
    Ok(Some((topic, packet_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_uses_continuation_bytes() {
        let mut out = Vec::new();
        put_remaining_length(&mut out, 321);
        assert_eq!(out, [0xC1, 0x02]);
        let p = publish("t", &[0u8; 200], false);
        assert_eq!(&p[..3], &[0x30, 0xCB, 0x01]);
    }

    #[test]
    fn connect_carries_will_and_credentials() {
        let p = connect(&Connect {
            client_id: "c",
            keep_alive_s: 30,
            will: Some(Will {
                topic: "a/availability",
                payload: b"offline",
                retain: true,
            }),
            username: Some("u"),
            password: Some("p"),
        });
        assert_eq!(p[0], 0x10);
        // flags: user, password, will retain, will, clean session
        assert_eq!(p[9], 0x80 | 0x40 | 0x20 | 0x04 | 0x02);
        assert!(p.windows(7).any(|w| w == b"offline"));
    }

    #[test]
    fn parses_publish_and_waits_for_more_bytes() {
        let mut bytes = publish("x/y", b"beep", false);
        assert_eq!(parse(&bytes[..3]), Ok(None));
        bytes.extend_from_slice(&pingreq()[..1]);
        let (p, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len() - 1);
        assert_eq!(
            p,
            Incoming::Publish {
                topic: "x/y".into(),
                payload: b"beep".to_vec(),
                packet_id: None
            }
        );
    }

    #[test]
    fn an_oversized_publish_is_reported_from_its_head_alone() {
        let payload = vec![b'x'; 200_000];
        let qos0 = publish("a/buzzer/set", &payload, false);
        let mut body = Vec::new();
        put_str(&mut body, b"a/buzzer/set");
        body.extend_from_slice(&7u16.to_be_bytes());
        body.extend_from_slice(&payload);
        let qos1 = packet(0x32, &body);
        for (bytes, id) in [(qos0, None), (qos1, Some(7))] {
            // Only the head is needed, and `used` runs past it.
            assert_eq!(parse(&bytes[..5]), Ok(None), "the topic has not arrived");
            let (packet, used) = parse(&bytes[..64]).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(
                packet,
                Incoming::Oversized {
                    topic: "a/buzzer/set".into(),
                    len: bytes.len(),
                    packet_id: id,
                }
            );
        }
        // A head that runs past the packet is malformed; so is any other
        // oversized packet type.
        let mut past = vec![0x32];
        put_remaining_length(&mut past, MAX_INCOMING + 1);
        past.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(parse(&past).is_err());
        let mut big = vec![0x90];
        put_remaining_length(&mut big, MAX_INCOMING + 1);
        assert!(parse(&big).is_err());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert!(parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
        assert!(parse(&[0x92, 0xFF, 0xFF, 0x7F]).is_err()); // too large
        assert!(parse(&[0x30, 0x02, 0x00, 0x09]).is_err()); // topic past the end
        assert!(parse(&[0x32, 0x03, 0x00, 0x01, b'a']).is_err()); // no packet id
        assert!(parse(&[0x20, 0x00]).is_err()); // short CONNACK
        for n in 0..=255u8 {
            let _ = parse(&[n, 3, 0, 1, 2]);
        }
    }
}
