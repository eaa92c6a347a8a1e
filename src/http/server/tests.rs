//! Sharing the connection slots between clients, without sockets: who a
//! client is, and [`make_room`] as a table.

use super::*;

fn client(ip: &str) -> Client {
    Client::of(ip.parse().unwrap())
}

/// Open connections as (client, phase, age in ms): `true` waiting for a
/// request, `false` being answered; ids are their positions.
fn slots(now: Instant, list: &[(&str, bool, u64)]) -> Vec<SlotView> {
    list.iter()
        .enumerate()
        .map(|(i, &(ip, waiting, age_ms))| SlotView {
            id: i as u64,
            client: client(ip),
            phase: if waiting {
                Phase::Waiting
            } else {
                Phase::Answering
            },
            since: now - Duration::from_millis(age_ms),
        })
        .collect()
}

/// `slots` with the connections at `closing` (ids) answered and closing.
fn with_closing(mut slots: Vec<SlotView>, closing: &[u64]) -> Vec<SlotView> {
    for s in &mut slots {
        if closing.contains(&s.id) {
            s.phase = Phase::Closing;
        }
    }
    slots
}

fn limits(max: usize, per_client: usize) -> Limits {
    Limits {
        max_connections: max,
        max_connections_per_client: per_client,
        ..Limits::default()
    }
}

#[test]
fn clients_are_addresses_and_ipv6_64s() {
    assert_eq!(client("10.0.0.1"), client("::ffff:10.0.0.1"));
    assert_ne!(client("10.0.0.1"), client("10.0.0.2"));
    assert_eq!(client("2001:db8::1"), client("2001:db8::ffff:1"));
    assert_ne!(client("2001:db8::1"), client("2001:db8:0:1::1"));
    assert_eq!(client("2001:db8::1").to_string(), "2001:db8::/64");
}

#[test]
fn room_is_made_from_the_newcomers_own_share_then_from_the_biggest_client() {
    let now = Instant::now();
    let a = "10.0.0.1";
    let b = "10.0.0.2";
    let c = "10.0.0.3";
    let cases: &[(&str, Vec<SlotView>, &str, Limits, Room)] = &[
        (
            "free slot",
            slots(now, &[(a, true, 10)]),
            b,
            limits(4, 2),
            Room::Free,
        ),
        (
            "at its share, a client's newcomer replaces its own idlest, however fresh",
            slots(now, &[(a, true, 5), (a, true, 20), (b, true, 9000)]),
            a,
            limits(8, 2),
            Room::Evict(1),
        ),
        (
            "a connection being answered is never closed",
            slots(now, &[(a, false, 5000), (a, true, 20)]),
            a,
            limits(8, 2),
            Room::Evict(1),
        ),
        (
            "all of the client's own connections busy: 503",
            slots(now, &[(a, false, 5000), (a, false, 20)]),
            a,
            limits(8, 2),
            Room::Refuse(String::new()),
        ),
        (
            "at the cap, the client holding the most gives up its idlest, even fresh",
            slots(
                now,
                &[(a, true, 50), (a, true, 80), (a, true, 20), (b, true, 900)],
            ),
            c,
            limits(4, 3),
            Room::Evict(1),
        ),
        (
            "at the cap among equals, only a connection idle for a second goes",
            slots(now, &[(a, true, 50), (b, true, 1500), (c, true, 2500)]),
            a,
            limits(3, 3),
            Room::Evict(2),
        ),
        (
            "at the cap among equals, all fresh: 503",
            slots(now, &[(a, true, 50), (b, true, 500), (c, true, 900)]),
            a,
            limits(3, 3),
            Room::Refuse(String::new()),
        ),
        (
            "closing connections count against no client's share",
            with_closing(
                slots(now, &[(a, true, 5), (a, true, 5), (a, true, 5)]),
                &[0, 1],
            ),
            a,
            limits(8, 2),
            Room::Free,
        ),
        (
            "at the cap, a closing connection goes first, whoever's",
            with_closing(
                slots(now, &[(a, true, 5000), (b, true, 10), (b, true, 10)]),
                &[2],
            ),
            c,
            limits(3, 3),
            Room::Evict(2),
        ),
        (
            "a client holding one more than the newcomer's keeps its fresh ones",
            slots(now, &[(a, true, 50), (a, true, 60), (b, true, 70)]),
            b,
            limits(3, 3),
            Room::Refuse(String::new()),
        ),
    ];
    for (what, slots, newcomer, limits, expected) in cases {
        let room = make_room(slots, client(newcomer), limits, now);
        match (expected, &room) {
            (Room::Refuse(_), Room::Refuse(why)) => {
                assert!(why.contains("retry"), "{what}: {why}");
            }
            _ => assert_eq!(&room, expected, "{what}"),
        }
    }
    // The refusals say which limit was reached.
    let own = make_room(&slots(now, &[(a, false, 1)]), client(a), &limits(8, 1), now);
    assert!(
        matches!(&own, Room::Refuse(why) if why.contains("http_max_connections_per_client")),
        "{own:?}"
    );
}
