//! The ceiling for the HTTP benchmark: a keep-alive HTTP/1.1 responder on
//! std with the host server's shape (one thread per connection,
//! `TCP_NODELAY`, each response written in one piece) that answers every
//! request with a fixed body and does nothing else (no routing, no limits,
//! no locks, no JSON, no Date header). A request with `Connection: close`
//! is answered and the connection closed, as the host does.
//!
//!     cargo run --release --example bare_http -- [ADDR:PORT] [BODY_BYTES]
//!
//! Prints `listening on http://ADDR` once bound (port 0 picks a free one).
//!
//! Why not tiny_http: it writes a response's head and body in two writes
//! and leaves Nagle's algorithm on, so every keep-alive response waits for
//! the client's delayed ACK (~40 ms); a baseline that stalls makes any
//! server look fast next to it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;

/// The two answers: keep-alive, and for a request that asks to close.
struct Answers {
    keep: Vec<u8>,
    close: Vec<u8>,
}

fn serve(mut stream: TcpStream, answers: &Answers) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Answer every complete request head in the buffer (wrk does not
        // pipeline, but a request may arrive in pieces).
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let close = buf[..end]
                .to_ascii_lowercase()
                .windows(17)
                .any(|w| w == b"connection: close");
            buf.drain(..end + 4);
            if close {
                let _ = stream.write_all(&answers.close);
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            if stream.write_all(&answers.keep).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let listener = TcpListener::bind(&addr).expect("bind");
    let answer = |connection: &str| {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n{connection}\r\n"
        )
        .into_bytes();
        response.extend(std::iter::repeat_n(b'x', size));
        response
    };
    let answers = Arc::new(Answers {
        keep: answer(""),
        close: answer("Connection: close\r\n"),
    });
    println!(
        "listening on http://{}",
        listener.local_addr().expect("an address")
    );
    for stream in listener.incoming().flatten() {
        let answers = answers.clone();
        std::thread::spawn(move || serve(stream, &answers));
    }
}
