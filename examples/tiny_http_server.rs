//! The comparison server of `bench/vs_tiny_http.py`: tiny_http 0.12, the
//! crate the user's design card names, in its best case. The host's worker
//! count (4) calls `incoming_requests()` and answers every request with a
//! fixed body (no routing, no JSON, no locks), the size of our `/api`.
//! Everything else is tiny_http's own: its accept thread, its pool that
//! gives each connection a thread, its defaults.
//!
//!     cargo run --release --example tiny_http_server -- [ADDR:PORT] [WORKERS] [BODY_BYTES]
//!
//! Prints `listening on http://ADDR` once bound (port 0 picks a free one).
//! Not the HTTP throughput baseline: that is `bare_http.rs` (tiny_http
//! writes head and body in two writes with Nagle's algorithm on, so a
//! keep-alive response waits for the client's delayed ACK).

use std::io::Write;
use std::sync::Arc;

fn main() {
    // tiny_http logs through `log`: show its errors (an accept error ends
    // its accept thread; RUST_LOG unset shows errors only).
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(4);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let server = Arc::new(tiny_http::Server::http(&addr).expect("bind"));
    let body: Arc<Vec<u8>> = Arc::new(vec![b'x'; size]);
    println!(
        "listening on http://{}",
        server.server_addr().to_ip().expect("an IP listener")
    );
    let _ = std::io::stdout().flush();
    let threads: Vec<_> = (0..workers)
        .map(|worker| {
            let server = server.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let header =
                    tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                for request in server.incoming_requests() {
                    let response =
                        tiny_http::Response::from_data(body.as_slice()).with_header(header.clone());
                    let _ = request.respond(response);
                }
                // incoming_requests() ends when tiny_http's accept thread
                // gives up (an accept error such as EMFILE): say so, the
                // benchmark reports it.
                eprintln!("tiny_http_server: worker {worker}: incoming_requests() ended");
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
