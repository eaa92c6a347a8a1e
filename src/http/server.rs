//! Connections: our HTTP/1.1 server on std. One acceptor thread, one
//! short-lived reader thread per connection (at most `max_connections` of
//! them), and at most `workers` requests routed at once. The bytes are
//! [`super::wire`]'s business; this module only decides who may hold a
//! connection, reads with deadlines, and writes what `wire` encodes.
//!
//! Every read has a deadline: a connection that sends nothing is closed after
//! the idle timeout, and one that has started a request must deliver all of
//! it (head and body) within the request timeout or it gets `408`.
//!
//! Connection slots are shared out by client (an IPv4 address, or an IPv6
//! /64, see [`Client`]): one client holds at most `max_connections_per_client`
//! of them, and its newcomer beyond that closes that client's own idlest
//! connection. At the overall cap the acceptor closes a waiting connection
//! of the client that holds the most (any age when it holds more than the
//! newcomer's client, else one that has waited [`EVICT_AFTER`]); if every
//! connection is busy or fresh, the newcomer gets `503` with `Retry-After`
//! at once. So one client flooding idle or slow connections churns only its
//! own share, and everyone else finds a free slot. The choice is the pure
//! [`make_room`]. See ARCHITECTURE.md, "Decisions", *HTTP server*.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wire::{self, encode, parse_head, Connection, Head, HeadParse};
use super::{handle, AppState, Request, Response};

/// A connection at the cap may be closed for a newcomer once it has waited
/// this long for a complete request. A real client sends its request in
/// one go; only idle and slow ones wait this long.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);
/// How long writing a response may take before the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection is drained, so the client reads our
/// answer rather than a reset.
const LINGER: Duration = Duration::from_millis(500);
/// Connections the kernel queues for the acceptor. std listens with 128:
/// a burst of reconnects from a flooding client fills that, and another
/// client's connection attempt is dropped and retried only after 1 s (then
/// 3 s). Queued connections cost a few hundred bytes of kernel memory each.
const LISTEN_BACKLOG: i32 = 1024;
/// Reader threads only parse and copy; `handle` runs on them too and
/// needs little stack (no recursion, bounded bodies).
const STACK_SIZE: usize = 256 * 1024;

/// The server's bounds; see `[host]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests routed at once (`host.http_workers`).
    pub workers: usize,
    /// Open connections (`host.http_max_connections`).
    pub max_connections: usize,
    /// Open connections of one client (`host.http_max_connections_per_client`).
    pub max_connections_per_client: usize,
    /// From a request's first byte to its last (`host.http_request_timeout_ms`).
    pub request_timeout: Duration,
    /// Keep-alive: how long a connection may wait for its next request
    /// (`host.http_idle_timeout_ms`).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            workers: 4,
            max_connections: 128,
            max_connections_per_client: 32,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// Who a connection's slot counts against: its IPv4 address, or the /64
/// network of its IPv6 address (one host can use a whole /64; an
/// IPv4-mapped address counts as the IPv4 one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Client(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            v4 => Client(v4),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// What an open connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for (the rest of) a request: may be closed for a newcomer.
    Waiting,
    /// Being answered: never closed from outside.
    Answering,
    /// Answered and closing (draining what the client still sends, at most
    /// [`LINGER`]): done, so it counts against no client's share and is
    /// the first to go at the cap.
    Closing,
}

/// One open connection, as the acceptor sees it.
struct Slot {
    /// A handle on the socket, to close it from outside.
    stream: TcpStream,
    client: Client,
    phase: Phase,
    /// When it entered its phase (for `Waiting`: started waiting for its
    /// current request).
    since: Instant,
}

/// What [`make_room`] sees of an open connection.
#[derive(Debug, Clone, Copy)]
pub struct SlotView {
    pub id: u64,
    pub client: Client,
    pub phase: Phase,
    pub since: Instant,
}

/// How a newcomer gets a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// There is a free slot.
    Free,
    /// Close this connection for it.
    Evict(u64),
    /// None: answer `503` saying this.
    Refuse(String),
}

/// Where a newcomer from `client` goes, given the open connections: the
/// per-client share first (its own idlest waiting connection makes room;
/// closing ones do not count), then the overall cap (a closing connection,
/// else the biggest client's idlest waiting connection, any age if that
/// client holds more than the newcomer's would, else one that has waited
/// [`EVICT_AFTER`]). Connections being answered are never closed.
pub fn make_room(slots: &[SlotView], client: Client, limits: &Limits, now: Instant) -> Room {
    let mut counts: HashMap<Client, usize> = HashMap::new();
    for s in slots.iter().filter(|s| s.phase != Phase::Closing) {
        *counts.entry(s.client).or_insert(0) += 1;
    }
    let waiting = |s: &&SlotView| s.phase == Phase::Waiting;
    let mine = counts.get(&client).copied().unwrap_or(0);
    let per_client = limits.max_connections_per_client;
    if mine >= per_client {
        return slots
            .iter()
            .filter(|s| s.client == client)
            .filter(waiting)
            .min_by_key(|s| s.since)
            .map_or_else(
                || {
                    Room::Refuse(format!(
                        "this client already has its maximum of {per_client} connections open \
                         (host.http_max_connections_per_client), all busy; retry in a second"
                    ))
                },
                |s| Room::Evict(s.id),
            );
    }
    if slots.len() < limits.max_connections {
        return Room::Free;
    }
    if let Some(done) = slots
        .iter()
        .filter(|s| s.phase == Phase::Closing)
        .min_by_key(|s| s.since)
    {
        return Room::Evict(done.id);
    }
    slots
        .iter()
        .filter(waiting)
        .filter(|s| {
            counts[&s.client] > mine + 1 || now.saturating_duration_since(s.since) >= EVICT_AFTER
        })
        .min_by_key(|s| (std::cmp::Reverse(counts[&s.client]), s.since))
        .map_or_else(
            || {
                Room::Refuse(format!(
                    "the server has its maximum of {} connections open; retry in a second",
                    limits.max_connections
                ))
            },
            |s| Room::Evict(s.id),
        )
}

struct Inner {
    state: Arc<AppState>,
    limits: Limits,
    conns: Mutex<HashMap<u64, Slot>>,
    /// Signalled when a connection closes (for `stop`).
    closed: Condvar,
    /// Free handler permits (`limits.workers` in all).
    permits: Mutex<usize>,
    permit_freed: Condvar,
    stop: AtomicBool,
    next_id: AtomicU64,
}

impl Inner {
    fn set_phase(&self, id: u64, phase: Phase) {
        let mut conns = self.conns.lock().expect("http connection table lock");
        if let Some(slot) = conns.get_mut(&id) {
            slot.phase = phase;
            slot.since = Instant::now();
        }
    }

    /// Runs `f` holding one of the `workers` permits.
    fn with_permit<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Permit<'a>(&'a Inner);
        impl Drop for Permit<'_> {
            fn drop(&mut self) {
                *self.0.permits.lock().expect("http handler permits lock") += 1;
                self.0.permit_freed.notify_one();
            }
        }
        {
            let mut free = self.permits.lock().expect("http handler permits lock");
            while *free == 0 {
                free = self
                    .permit_freed
                    .wait(free)
                    .expect("http handler permits lock");
            }
            *free -= 1;
        }
        let _permit = Permit(self);
        f()
    }

    /// Counts a request the transport answered itself (in `/metrics`).
    fn count(&self, status: u16) {
        self.state.count("transport", status);
    }
}

/// The running server.
pub struct Server {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Server {
    /// Binds `listen` and starts the acceptor.
    pub fn start(
        listen: SocketAddr,
        limits: Limits,
        state: Arc<AppState>,
    ) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(listen).map_err(|e| {
            anyhow::anyhow!("cannot listen on {listen}: {e} (is another program using the port? choose another with --listen)")
        })?;
        let addr = listener.local_addr()?;
        // Listening again on a listening socket only changes the backlog
        // (Linux caps it at net.core.somaxconn, 4096 by default).
        // SAFETY: `listener` owns an open, bound, listening socket for the
        // whole call; `listen` reads no memory of ours.
        if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), LISTEN_BACKLOG) } != 0
        {
            log::debug!(
                "http: cannot raise the listen backlog: {}",
                std::io::Error::last_os_error()
            );
        }
        let max_connections = limits.max_connections.max(1);
        let limits = Limits {
            workers: limits.workers.max(1),
            max_connections,
            max_connections_per_client: limits.max_connections_per_client.clamp(1, max_connections),
            ..limits
        };
        let inner = Arc::new(Inner {
            state,
            limits,
            conns: Mutex::new(HashMap::new()),
            closed: Condvar::new(),
            permits: Mutex::new(limits.workers),
            permit_freed: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        });
        let acceptor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || {
                    let shared = inner.state.shared.clone();
                    crate::scheduler::watched(&shared, "http-accept", || {
                        accept_loop(&listener, &inner)
                    })
                })?
        };
        Ok(Server {
            inner,
            acceptor: Some(acceptor),
            addr,
        })
    }

    /// Stops accepting, lets requests being answered finish, closes the
    /// rest, and waits (at most 2 s) for every connection to end.
    pub fn stop(mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor from accept() with a connection of our own.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, self.addr.port()).into(),
            IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, self.addr.port()).into(),
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        // Stopping must close what is open whatever a panicking connection
        // thread left: the table holds only sockets to shut down and wait for.
        let mut conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        for slot in conns.values().filter(|s| s.phase == Phase::Waiting) {
            let _ = slot.stream.shutdown(Shutdown::Both);
        }
        while !conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                log::warn!("http: {} connections still open at stop", conns.len());
                break;
            }
            conns = self
                .inner
                .closed
                .wait_timeout(conns, deadline - now)
                .unwrap_or_else(|e| e.into_inner()) // as above
                .0;
        }
    }
}

fn accept_loop(listener: &TcpListener, inner: &Arc<Inner>) {
    loop {
        let accepted = listener.accept();
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => admit(stream, Client::of(peer.ip()), inner),
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                log::warn!("http: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Registers and starts a connection, making room or refusing it at the cap.
fn admit(stream: TcpStream, client: Client, inner: &Arc<Inner>) {
    let _ = stream.set_nodelay(true);
    let Ok(handle) = stream.try_clone() else {
        return;
    };
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut conns = inner.conns.lock().expect("http connection table lock");
        let views: Vec<SlotView> = conns
            .iter()
            .map(|(&id, s)| SlotView {
                id,
                client: s.client,
                phase: s.phase,
                since: s.since,
            })
            .collect();
        match make_room(&views, client, &inner.limits, Instant::now()) {
            Room::Free => {}
            Room::Evict(victim) => {
                if let Some(slot) = conns.remove(&victim) {
                    log::debug!(
                        "http: closing a waiting connection of {} to make room for {client}",
                        slot.client
                    );
                    let _ = slot.stream.shutdown(Shutdown::Both);
                }
            }
            Room::Refuse(why) => {
                drop(conns);
                inner.count(503);
                refuse(stream, why);
                return;
            }
        }
        conns.insert(
            id,
            Slot {
                stream: handle,
                client,
                phase: Phase::Waiting,
                since: Instant::now(),
            },
        );
    }
    let spawned = {
        let inner = inner.clone();
        let stream = stream.try_clone();
        std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _slot = Leaving(&inner, id);
                if let Ok(stream) = stream {
                    serve(stream, id, &inner);
                }
            })
    };
    if let Err(e) = spawned {
        log::warn!("http: cannot start a connection thread: {e}");
        inner
            .conns
            .lock()
            .expect("http connection table lock")
            .remove(&id);
        inner.count(503);
        refuse(
            stream,
            "the server cannot start another connection thread; retry in a second".into(),
        );
    }
}

/// Frees a connection's slot when its thread ends, also by a panic (which
/// would otherwise keep the slot taken until the server refused everyone).
struct Leaving<'a>(&'a Inner, u64);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0
            .conns
            .lock()
            .expect("http connection table lock")
            .remove(&self.1);
        self.0.closed.notify_all();
    }
}

/// `503` at once, without blocking the acceptor.
fn refuse(stream: TcpStream, why: String) {
    let response = Response::error(503, why).with_header("Retry-After", "1");
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(&encode(&response, false, Connection::Close));
    let _ = stream.shutdown(Shutdown::Write);
    // Whatever the client already sent is read, so closing does not reset
    // the connection before the 503 is read.
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        if !matches!((&stream).read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// Why reading a request stopped.
enum Stop {
    /// Closed, reset or idle: nothing to answer.
    Quiet,
    /// Answer this, then close.
    Answer(Response),
}

/// Serves one connection until it closes, errs or times out.
fn serve(mut stream: TcpStream, id: u64, inner: &Inner) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let peer = stream.peer_addr().ok().map(|a| a.ip().to_canonical());
    let limits = inner.limits;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let outcome = read_request(&mut stream, &mut buf, &limits);
        let (head, mut request) = match outcome {
            Ok(r) => r,
            Err(Stop::Quiet) => return,
            Err(Stop::Answer(response)) => {
                inner.count(response.status);
                let _ = stream.write_all(&encode(&response, false, Connection::Close));
                inner.set_phase(id, Phase::Closing);
                linger(&mut stream);
                return;
            }
        };
        request.peer = peer;
        inner.set_phase(id, Phase::Answering);
        let response = inner.with_permit(|| handle(&request, &inner.state));
        let keep = head.keep_alive && !inner.stop.load(Ordering::SeqCst);
        let connection = match (keep, head.http10) {
            (false, _) => Connection::Close,
            (true, false) => Connection::KeepAlive,
            (true, true) => Connection::KeepAlive10,
        };
        let head_only = request.method == "HEAD";
        if stream
            .write_all(&encode(&response, head_only, connection))
            .is_err()
        {
            return;
        }
        if !keep {
            inner.set_phase(id, Phase::Closing);
            linger(&mut stream);
            return;
        }
        inner.set_phase(id, Phase::Waiting);
    }
}

/// Reads one whole request into `buf` (which may already hold the start of
/// it, pipelined) and takes it out. The deadlines: `idle_timeout` for its
/// first byte, `request_timeout` from there to its last.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> Result<(Head, Request), Stop> {
    let mut started = (!buf.is_empty()).then(Instant::now);
    let idle_deadline = Instant::now() + limits.idle_timeout;
    let mut continued = false;
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() && !buf.is_empty() {
            match parse_head(buf) {
                HeadParse::Incomplete => {}
                HeadParse::Reject(response) => return Err(Stop::Answer(response)),
                HeadParse::Complete(h) => head = Some(h),
            }
        }
        if let Some(mut h) = head.take() {
            if let Some(request) = h.take_request(buf) {
                buf.drain(..h.request_len());
                return Ok((h, request));
            }
            if h.expect_continue && !continued {
                continued = true;
                if stream.write_all(wire::CONTINUE).is_err() {
                    return Err(Stop::Quiet);
                }
            }
            head = Some(h);
        }
        let deadline = match started {
            None => idle_deadline,
            Some(t) => t + limits.request_timeout,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(match started {
                None => Stop::Quiet,
                Some(_) => Stop::Answer(Response::error(
                    408,
                    format!(
                        "the request was not received within {} ms",
                        limits.request_timeout.as_millis()
                    ),
                )),
            });
        }
        let _ = stream.set_read_timeout(Some(deadline - now));
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(match &head {
                    // The head came but the body stopped short.
                    Some(_) => Stop::Answer(Response::error(
                        400,
                        "the connection closed before the whole body (Content-Length) arrived",
                    )),
                    None => Stop::Quiet,
                });
            }
            Ok(n) => {
                started.get_or_insert_with(Instant::now);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(Stop::Quiet),
        }
    }
}

/// Closes gracefully: no more writing, then reads (and drops) what the client
/// still sends for a moment, so our last response is not lost to a reset.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while total < 64 * 1024 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let _ = stream.set_read_timeout(Some(deadline - now));
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests;
