//! The HTTP/1.1 wire format, without sockets: a bounded request head and
//! body parsed from bytes ([`parse_head`], [`parse_request`]), and a
//! response written as bytes ([`encode`]). Pure: no I/O, no clock but the
//! `Date` header, no state; every limit is checked here, so the connection
//! side ([`super::server`]) only moves bytes and keeps time.
//!
//! Every refusal is a [`Response`] (a 4xx/5xx with a JSON body saying
//! why) for the caller to send before it closes the connection. Tested
//! with examples for every limit and with property tests over hostile bytes
//! (`wire/tests.rs`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Request, Response};

/// Largest request body accepted (control requests are tiny JSON).
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest request target accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// Most header fields in one request (`431` beyond).
pub const MAX_HEADERS: usize = 32;
/// Largest request head: request line plus header fields (`431` beyond).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest request line: method, target and version (`414` beyond).
pub const MAX_REQUEST_LINE_BYTES: usize = MAX_URL_BYTES + 64;

/// A complete, accepted request head.
#[derive(Debug)]
pub struct Head {
    /// Everything but the body.
    pub request: Request,
    /// Bytes of the head, up to and including the empty line.
    pub head_len: usize,
    /// Bytes of body that follow (from `Content-Length`).
    pub body_len: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// HTTP/1.0 (keep-alive must then be announced in the response).
    pub http10: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

impl Head {
    /// Bytes of the whole request: head and body.
    pub fn request_len(&self) -> usize {
        self.head_len + self.body_len
    }

    /// The request with its body, once `buf` (which starts with this
    /// head) holds all of it; the head keeps the rest of what it knows.
    pub fn take_request(&mut self, buf: &[u8]) -> Option<Request> {
        let body = buf.get(self.head_len..self.request_len())?;
        Some(Request {
            body: body.to_vec(),
            ..std::mem::take(&mut self.request)
        })
    }
}

/// The interim response a client that sent `Expect: 100-continue` waits
/// for before it sends the body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the bytes received so far amount to.
#[derive(Debug)]
pub enum HeadParse {
    /// Not a whole head yet, and nothing wrong so far.
    Incomplete,
    Complete(Head),
    /// Malformed or over a limit: answer this (a 4xx/5xx with a JSON body)
    /// and close.
    Reject(Response),
}

/// Parses a request head from the start of `buf`. Pure and bounded: looks
/// at no more than [`MAX_HEAD_BYTES`] (plus what one read adds), never
/// panics.
pub fn parse_head(buf: &[u8]) -> HeadParse {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut fields);
    let head_len = match raw.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf),
        Err(httparse::Error::TooManyHeaders) => {
            return HeadParse::Reject(Response::error(
                431,
                format!("more than {MAX_HEADERS} header fields"),
            ))
        }
        Err(e) => return HeadParse::Reject(malformed(e)),
    };
    if head_len > MAX_HEAD_BYTES {
        return HeadParse::Reject(head_too_large());
    }
    let (Some(method), Some(target), Some(version)) = (raw.method, raw.path, raw.version) else {
        return HeadParse::Reject(Response::error(400, "incomplete request line"));
    };
    if target.len() > MAX_URL_BYTES {
        return HeadParse::Reject(url_too_long());
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for field in raw.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        let Ok(value) = std::str::from_utf8(field.value) else {
            return HeadParse::Reject(Response::error(
                400,
                format!(
                    "the value of header field `{}` is not valid UTF-8",
                    crate::text::truncate(&name, 64)
                ),
            ));
        };
        headers.push((name, value.trim().to_string()));
    }
    let request = Request {
        method: method.to_string(),
        path: target
            .split_once('?')
            .map_or(target, |(p, _)| p)
            .to_string(),
        query: target.split_once('?').map_or("", |(_, q)| q).to_string(),
        content_type: headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone()),
        headers,
        body: Vec::new(),
        peer: None,
    };
    match framing(&request) {
        Ok((body_len, expect_continue)) => {
            let http10 = version == 0;
            let keep_alive = keep_alive(&request, http10);
            HeadParse::Complete(Head {
                request,
                head_len,
                body_len,
                keep_alive,
                http10,
                expect_continue,
            })
        }
        Err(response) => HeadParse::Reject(response),
    }
}

/// A head still arriving: fine unless it is already over a limit.
fn partial(buf: &[u8]) -> HeadParse {
    // httparse skips empty lines before the request line; so do we.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line_len = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buf.len() - start);
    if line_len > MAX_REQUEST_LINE_BYTES {
        HeadParse::Reject(url_too_long())
    } else if buf.len() > MAX_HEAD_BYTES {
        HeadParse::Reject(head_too_large())
    } else {
        HeadParse::Incomplete
    }
}

fn url_too_long() -> Response {
    Response::error(
        414,
        format!("request target longer than {MAX_URL_BYTES} bytes"),
    )
}

fn head_too_large() -> Response {
    Response::error(
        431,
        format!("request head (request line and header fields) larger than {MAX_HEAD_BYTES} bytes"),
    )
}

fn malformed(e: httparse::Error) -> Response {
    let what = match e {
        httparse::Error::HeaderName => "a header field name is malformed",
        httparse::Error::HeaderValue => "a header field value is malformed",
        httparse::Error::NewLine => "a line does not end in CRLF",
        httparse::Error::Status => "the status is malformed",
        httparse::Error::Token => "the method is malformed",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "the HTTP version is malformed or not HTTP/1.0 or HTTP/1.1",
    };
    Response::error(400, format!("malformed request: {what}"))
}

/// The value of field `name` in `application/x-www-form-urlencoded` bytes
/// (a form body or a query string), decoded as the WHATWG URL standard
/// says (the `form_urlencoded` crate): `+` is a space, `%` and two hex
/// digits a byte, and a `%` not followed by two hex digits stays a literal
/// `%` (so `%+f` is `% f`, never the byte 0x0f); bytes that are not UTF-8
/// become U+FFFD. The first field of that name wins.
pub fn form_field(bytes: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(bytes)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The body's length from the head, and whether the client expects
/// `100 Continue`. Bodies need a `Content-Length` (chunked bodies are
/// refused: nothing here needs them, and a length lets us refuse a big body
/// before it is sent).
fn framing(request: &Request) -> Result<(usize, bool), Response> {
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut length: Option<u64> = None;
    for value in values("content-length") {
        // "5, 5" (a list from a proxy) counts as one value each.
        for part in value.split(',').map(str::trim) {
            let parsed =
                (!part.is_empty() && part.len() <= 19 && part.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| part.parse::<u64>().ok())
                    .flatten();
            match (parsed, length) {
                (None, _) => {
                    return Err(Response::error(
                        400,
                        format!(
                            "bad Content-Length {:?}: must be a decimal number of bytes",
                            crate::text::truncate(value, 40)
                        ),
                    ))
                }
                (Some(n), Some(m)) if n != m => {
                    return Err(Response::error(
                        400,
                        "conflicting Content-Length header fields",
                    ))
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    if let Some(coding) = values("transfer-encoding").next_back() {
        if length.is_some() {
            return Err(Response::error(
                400,
                "both Transfer-Encoding and Content-Length: send one",
            ));
        }
        let chunked = coding
            .rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return Err(if chunked {
            Response::error(
                411,
                format!("chunked request bodies are not accepted: send a Content-Length (bodies are at most {MAX_BODY_BYTES} bytes)"),
            )
        } else {
            Response::error(
                501,
                format!(
                    "Transfer-Encoding {:?} is not supported: send a Content-Length",
                    crate::text::truncate(coding, 40)
                ),
            )
        });
    }
    let length = match length {
        Some(n) => n,
        None if matches!(request.method.as_str(), "POST" | "PUT" | "PATCH") => {
            return Err(Response::error(
                411,
                format!(
                    "{} needs a Content-Length header (bodies are at most {MAX_BODY_BYTES} bytes)",
                    request.method
                ),
            ))
        }
        None => 0,
    };
    if length > MAX_BODY_BYTES as u64 {
        return Err(Response::error(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let expect_continue = match values("expect").next_back() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(v) => {
            return Err(Response::error(
                417,
                format!(
                    "Expect {:?} is not supported (only 100-continue is)",
                    crate::text::truncate(v, 40)
                ),
            ))
        }
    };
    Ok((length as usize, expect_continue))
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it
/// unless told `keep-alive`.
fn keep_alive(request: &Request, http10: bool) -> bool {
    let mut keep = !http10;
    for (name, value) in &request.headers {
        if name == "connection" {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    return false;
                }
                if token.eq_ignore_ascii_case("keep-alive") {
                    keep = true;
                }
            }
        }
    }
    keep
}

/// Parses a whole request (head and body) from the start of `buf`:
/// `Ok(None)` while incomplete, else the request and the bytes it used, or
/// the response refusing it. What the reader threads do, without sockets.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, Response> {
    match parse_head(buf) {
        HeadParse::Incomplete => Ok(None),
        HeadParse::Reject(r) => Err(r),
        HeadParse::Complete(mut head) => Ok(head
            .take_request(buf)
            .map(|request| (request, head.request_len()))),
    }
}

/// The response bytes: status line, our standard headers, the router's,
/// and the body (none for `HEAD`).
pub fn encode(response: &Response, head_only: bool, connection: Connection) -> Vec<u8> {
    let status = response.status;
    let no_body = status < 200 || status == 204 || status == 304;
    let mut out = Vec::with_capacity(256 + response.body.len());
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    let _ = write!(out, "Date: {}\r\n", http_date(SystemTime::now()));
    let _ = write!(out, "Content-Type: {}\r\n", response.content_type);
    if !no_body {
        let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    }
    // `no-store` unless the router chose a policy (static assets do).
    if !response
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
    {
        out.extend_from_slice(b"Cache-Control: no-store\r\n");
    }
    out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
    for (name, value) in &response.headers {
        // Framing is ours; a field that could split the head is dropped.
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            && value
                .bytes()
                .all(|b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80);
        if !framing && valid {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    match connection {
        Connection::Close => out.extend_from_slice(b"Connection: close\r\n"),
        Connection::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Connection::KeepAlive => {}
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !no_body {
        out.extend_from_slice(&response.body);
    }
    out
}

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Close,
    /// HTTP/1.1: persistent by default, nothing to say.
    KeepAlive,
    /// HTTP/1.0 asked for keep-alive and gets it.
    KeepAlive10,
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
