//! The ceiling for the HTTP benchmark: a tiny_http server with the host's
//! worker count that answers every request with a fixed body and nothing
//! else (no routing, no locks, no JSON).
//!
//!     cargo run --example bare_http -- [ADDR:PORT] [WORKERS] [BODY_BYTES]
//!
//! Prints `listening on http://ADDR` once bound (port 0 picks a free one).

use std::sync::Arc;

fn main() {
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
    let threads: Vec<_> = (0..workers)
        .map(|_| {
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
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
