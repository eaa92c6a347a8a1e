//! The parser and the response encoder, without sockets: examples for every
//! limit and refusal, and property tests over hostile bytes.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<Option<(Request, usize)>, Response> {
    parse_request(text.as_bytes())
}

fn refused(text: &str) -> Response {
    match parse(text) {
        Err(r) => r,
        Ok(r) => panic!("{text:?} was accepted: {r:?}"),
    }
}

fn accepted(text: &str) -> Request {
    match parse(text) {
        Ok(Some((r, n))) => {
            assert_eq!(n, text.len(), "{text:?} used whole");
            r
        }
        other => panic!("{text:?} was not accepted: {other:?}"),
    }
}

fn head(text: &str) -> Head {
    match parse_head(text.as_bytes()) {
        HeadParse::Complete(h) => h,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn a_request_is_filled_like_the_router_expects() {
    let r = accepted(
        "POST /api/buzzer?x=1&y HTTP/1.1\r\nHost: pi\r\nContent-Type:  application/json \r\n\
         X-Token: abc\r\ncontent-type: text/plain\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
    );
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/buzzer");
    assert_eq!(r.query, "x=1&y");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        r.headers,
        vec![
            ("host".to_string(), "pi".to_string()),
            ("content-type".into(), "application/json".into()),
            ("x-token".into(), "abc".into()),
            ("content-type".into(), "text/plain".into()),
            ("content-length".into(), "7".into()),
        ]
    );
    assert_eq!(r.body, b"{\"a\":1}");
    let r = accepted("GET / HTTP/1.0\r\n\r\n");
    assert_eq!((r.path.as_str(), r.query.as_str()), ("/", ""));
    assert!(r.body.is_empty() && r.content_type.is_none());
}

#[test]
fn incomplete_input_asks_for_more() {
    for text in [
        "",
        "GET",
        "GET /api HTTP/1.1\r\n",
        "GET /api HTTP/1.1\r\nHost: x\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
    ] {
        assert!(matches!(parse(text), Ok(None)), "{text:?}");
    }
}

#[test]
fn pipelined_requests_are_taken_one_at_a_time() {
    let two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    let (first, n) = parse(two).unwrap().unwrap();
    assert_eq!(first.path, "/a");
    let (second, _) = parse(&two[n..]).unwrap().unwrap();
    assert_eq!(second.path, "/b");
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n").keep_alive);
    let h = head("GET / HTTP/1.0\r\n\r\n");
    assert!(!h.keep_alive && h.http10);
    assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
}

#[test]
fn malformed_requests_get_400_saying_what_is_wrong() {
    let cases: [(&[u8], &str); 7] = [
        (b"GET\r\n\r\n", "malformed request"),
        (b"GET / HTTP/2.0\r\n\r\n", "HTTP version"),
        (b"GET / FOO\r\n\r\n", "HTTP version"),
        (b"G(T / HTTP/1.1\r\n\r\n", "malformed"),
        (
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "header field name",
        ),
        (b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", "not valid UTF-8"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "malformed"),
    ];
    for (bytes, says) in cases {
        let r = match parse_request(bytes) {
            Err(r) => r,
            Ok(r) => panic!("{bytes:?} accepted: {r:?}"),
        };
        assert_eq!(r.status, 400, "{bytes:?}: {}", r.text());
        assert!(r.text().contains(says), "{bytes:?}: {}", r.text());
    }
    let r = refused("GET / HTTP/1.1\r\nX: \x7f\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn limits_on_the_head_are_enforced_with_414_and_431() {
    let long_url = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URL_BYTES));
    assert_eq!(refused(&long_url).status, 414);
    // Refused as soon as the line is too long, before it ends.
    let endless = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE_BYTES + 1));
    let r = refused(&endless);
    assert_eq!(r.status, 414);
    assert!(r.text().contains("2048"), "{}", r.text());
    let at_limit = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URL_BYTES - 1));
    assert_eq!(accepted(&at_limit).path.len(), MAX_URL_BYTES);

    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let r = refused(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
    assert_eq!(r.status, 431);
    assert!(r.text().contains("32 header fields"), "{}", r.text());

    let big = format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(MAX_HEAD_BYTES)
    );
    let r = refused(&big);
    assert_eq!(r.status, 431);
    assert!(r.text().contains("8192 bytes"), "{}", r.text());
    // Also while still arriving.
    assert_eq!(refused(&big[..MAX_HEAD_BYTES + 10]).status, 431);
}

#[test]
fn bodies_need_a_valid_bounded_content_length() {
    let r = refused(&format!(
        "POST /api/buzzer HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    ));
    assert_eq!(r.status, 413);
    assert!(r.text().contains("4096"), "{}", r.text());
    for bad in ["-1", "abc", "1e3", "", "0x10", "99999999999999999999999"] {
        let r = refused(&format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n"));
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.text().contains("Content-Length"), "{}", r.text());
    }
    let r = refused("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    assert!(r.text().contains("conflicting"), "{}", r.text());
    let same = accepted("POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(same.body, b"ab");

    let r = refused("POST / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 411);
    assert!(
        r.text().contains("POST needs a Content-Length"),
        "{}",
        r.text()
    );
    let r = refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(r.status, 411);
    assert!(r.text().contains("chunked"), "{}", r.text());
    let r = refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(r.status, 501);
    let r = refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(r.status, 400);
    // A GET without a length has no body.
    assert!(accepted("GET / HTTP/1.1\r\n\r\n").body.is_empty());
}

#[test]
fn expect_100_continue_is_understood_and_others_refused() {
    let h = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    assert!(h.expect_continue);
    assert_eq!(h.body_len, 3);
    let r = refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: teapot\r\n\r\n");
    assert_eq!(r.status, 417);
    // A body too large is refused before the client sends it.
    let r = refused("POST / HTTP/1.1\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(r.status, 413);
}

#[test]
fn responses_carry_the_standard_headers_and_drop_unsafe_ones() {
    let response = Response::new(200, "application/json", "{}")
        .with_header("Allow", "GET")
        .with_header("X-Evil", "a\r\nSet-Cookie: x")
        .with_header("Content-Length", "999");
    let text = String::from_utf8(encode(&response, false, Connection::KeepAlive)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for line in [
        "Content-Type: application/json\r\n",
        "Content-Length: 2\r\n",
        "Cache-Control: no-store\r\n",
        "X-Content-Type-Options: nosniff\r\n",
        "Allow: GET\r\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(
        !text.contains("Set-Cookie") && !text.contains("999"),
        "{text}"
    );
    assert!(!text.contains("Connection:"), "{text}");
    assert!(text.ends_with("\r\n\r\n{}"), "{text}");

    let head_only = String::from_utf8(encode(&response, true, Connection::Close)).unwrap();
    assert!(head_only.contains("Content-Length: 2\r\n"), "{head_only}");
    assert!(head_only.contains("Connection: close\r\n"), "{head_only}");
    assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
    let ten = String::from_utf8(encode(&response, false, Connection::KeepAlive10)).unwrap();
    assert!(ten.contains("Connection: keep-alive\r\n"), "{ten}");
}

#[test]
fn dates_are_imf_fixdate() {
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // a leap day
    assert_eq!(http_date(t), "Thu, 29 Feb 2024 12:34:56 GMT");
}

#[test]
fn form_fields_decode_as_the_url_standard_says() {
    let cases: &[(&[u8], &str, Option<&str>)] = &[
        (b"x=1&token=a%2Bb+c", "token", Some("a+b c")),
        (b"t%6Fken=v", "token", Some("v")),
        (b"token=1&token=2", "token", Some("1")),
        (b"token", "token", Some("")),
        (b"other=1", "token", None),
        (b"", "token", None),
        // Malformed escapes stay literal: no sign, no short or non-hex
        // digits are read as a byte.
        (b"token=%+f", "token", Some("% f")),
        (b"token=%-1", "token", Some("%-1")),
        (b"token=%zz", "token", Some("%zz")),
        (b"token=%4", "token", Some("%4")),
        (b"token=%", "token", Some("%")),
        (b"token=%%41", "token", Some("%A")),
        (b"token=%e9", "token", Some("\u{fffd}")),
        (b"token=%C3%A9", "token", Some("\u{e9}")),
    ];
    for &(bytes, name, expected) in cases {
        assert_eq!(
            form_field(bytes, name).as_deref(),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Every refusal is a client or server error with a JSON body that says why.
fn check_refusal(r: &Response) -> Result<(), TestCaseError> {
    prop_assert!(
        [400, 408, 411, 413, 414, 417, 431, 501].contains(&r.status),
        "status {}",
        r.status
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| TestCaseError::fail(format!("body is not JSON: {e}")))?;
    prop_assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()));
    Ok(())
}

fn check_outcome(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_request(bytes) {
        Ok(None) => {
            // Incomplete only while under the limits.
            prop_assert!(bytes.len() <= MAX_HEAD_BYTES + MAX_BODY_BYTES);
        }
        Ok(Some((request, used))) => {
            prop_assert!(used <= bytes.len());
            prop_assert!(request.body.len() <= MAX_BODY_BYTES);
            prop_assert!(request.path.len() <= MAX_URL_BYTES);
            prop_assert!(request.headers.len() <= MAX_HEADERS);
            prop_assert!(request
                .headers
                .iter()
                .all(|(n, _)| *n == n.to_ascii_lowercase()));
        }
        Err(r) => check_refusal(&r)?,
    }
    Ok(())
}

/// Requests that are almost right: real methods, targets, versions and
/// fields, then a few bytes flipped, cut or inserted.
fn near_requests() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "G ET", "",
    ]);
    let target = prop::sample::select(vec![
        "/".to_string(),
        "/api".into(),
        "/api/buzzer?x=1".into(),
        "*".into(),
        "http://pi/api".into(),
        format!("/{}", "a".repeat(MAX_URL_BYTES)),
    ]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", ""]);
    let field = (
        prop::sample::select(vec![
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Expect",
            "Content-Type",
            "X-A",
            "Bad Name",
            "",
        ]),
        prop::sample::select(vec![
            "0",
            "5",
            "4097",
            "-1",
            "chunked",
            "close",
            "keep-alive",
            "100-continue",
            "x\ty",
            "",
        ]),
    );
    let fields = prop::collection::vec(field, 0..40);
    let body = prop::collection::vec(any::<u8>(), 0..64);
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4);
    (method, target, version, fields, body, edits).prop_map(
        |(method, target, version, fields, body, edits)| {
            let mut bytes = format!("{method} {target} {version}\r\n").into_bytes();
            for (name, value) in fields {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&body);
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            bytes
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..12_000)) {
        check_outcome(&bytes)?;
    }

    #[test]
    fn mutated_requests_yield_a_request_or_a_clear_refusal(bytes in near_requests()) {
        check_outcome(&bytes)?;
        // Every prefix too: what a reader sees as the bytes trickle in.
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            check_outcome(&bytes[..cut.min(bytes.len())])?;
        }
    }

    #[test]
    fn any_response_encodes_to_one_well_formed_head(
        status in 100u16..600,
        name in "[ -~]{0,20}",
        value in prop::collection::vec(any::<u8>(), 0..40),
        body in prop::collection::vec(any::<u8>(), 0..100),
        head_only in any::<bool>(),
    ) {
        let value = String::from_utf8_lossy(&value).into_owned();
        let leaked: &'static str = Box::leak(name.into_boxed_str());
        let response = Response::new(status, "text/plain", body).with_header(leaked, value);
        let bytes = encode(&response, head_only, Connection::KeepAlive);
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut fields);
        let status_seen = parsed.parse(&bytes);
        prop_assert!(matches!(status_seen, Ok(httparse::Status::Complete(_))), "{:?}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(parsed.code, Some(status));
    }
}
