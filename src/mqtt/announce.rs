//! What the host has announced to Home Assistant, and the limits on
//! announcing more.
//!
//! Every discovery config the host publishes (retained) makes an entity in
//! Home Assistant, and every empty one it publishes later removes it. A
//! plugin decides which sensor ids it reports, so without limits a plugin
//! inventing new ids on every poll makes Home Assistant create and delete
//! entities as fast as it polls (issue 16, item 12). So:
//!
//! * a plugin has at most [`MAX_ENTITIES_PER_PLUGIN`] entities announced at
//!   once, and gets new ones from a bucket of [`NEW_ENTITY_BURST`], refilled
//!   at one per [`NEW_ENTITY_EVERY`]; what does not fit is not announced
//!   (its values are still in the state document and `/api`);
//! * all discovery messages (configs and withdrawals) share one bucket of
//!   [`PUBLISH_BURST`], refilled at [`PUBLISH_PER_SECOND`]; what does not fit
//!   waits for the next round;
//! * log lines about entities come from a budget of [`LOG_LINES`] a minute,
//!   the rest are counted into a summary;
//! * a plugin that ran into those limits has ids that come and go: at a
//!   clean stop its entities are withdrawn too (a stable plugin's stay,
//!   greyed out by the availability topic, until the host is back).
//!
//! Pure bookkeeping: the MQTT thread asks [`Announcements::plan`] what to
//! send and reports what it sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ratelimit::TokenBucket;

/// Entities one plugin may have announced at once.
pub const MAX_ENTITIES_PER_PLUGIN: usize = 64;
/// New entities a plugin may announce at once ...
pub const NEW_ENTITY_BURST: u32 = 64;
/// ... and then one per this long.
pub const NEW_ENTITY_EVERY: Duration = Duration::from_secs(10);
/// Discovery messages (configs and withdrawals) sent at once ...
pub const PUBLISH_BURST: u32 = 128;
/// ... and then this many a second.
pub const PUBLISH_PER_SECOND: u32 = 10;
/// Log lines about entities per minute; the rest are summarised.
pub const LOG_LINES: u32 = 10;

/// Which part of the host an entity comes from; each is worked out on its
/// own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Readings: sensors, system stats, plugin telemetry.
    Sensors = 0,
    /// Plugin health.
    Plugins = 1,
}

/// An entity the readings or the registry want announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub topic: String,
    pub payload: Value,
    /// The plugin whose readings make it; `None` for the host's own.
    pub owner: Option<String>,
}

/// One discovery message to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    Config {
        group: Group,
        topic: String,
        payload: Value,
        owner: Option<String>,
    },
    Clear {
        group: Group,
        topic: String,
    },
}

/// See the module doc.
pub struct Announcements {
    /// Topic → owner of every config published and not withdrawn, by
    /// group; kept across connections (the broker keeps them retained).
    announced: [BTreeMap<String, Option<String>>; 2],
    /// Configs published on the current connection.
    on_connection: BTreeSet<String>,
    new_entities: HashMap<String, TokenBucket>,
    publishes: TokenBucket,
    /// Plugins that ran into the per-plugin limits.
    volatile: BTreeSet<String>,
    log: LogBudget,
}

impl Default for Announcements {
    fn default() -> Self {
        Announcements::with_publish_rate(TokenBucket::new(
            PUBLISH_BURST,
            Duration::from_secs(1) / PUBLISH_PER_SECOND,
        ))
    }
}

impl Announcements {
    /// With discovery messages limited by `publishes` (tests give it a
    /// large bucket to look at the other limits alone).
    pub fn with_publish_rate(publishes: TokenBucket) -> Announcements {
        Announcements {
            announced: Default::default(),
            on_connection: BTreeSet::new(),
            new_entities: HashMap::new(),
            publishes,
            volatile: BTreeSet::new(),
            log: LogBudget::default(),
        }
    }

    /// A new connection: every wanted config goes out again.
    pub fn new_connection(&mut self) {
        self.on_connection.clear();
    }

    /// What to send so that the broker holds `wanted` for `group`: configs
    /// not yet sent on this connection (within the limits) and withdrawals
    /// of announced configs no longer wanted. `running(plugin)` says
    /// whether a plugin is still configured and enabled.
    pub fn plan(
        &mut self,
        group: Group,
        wanted: Vec<Wanted>,
        running: &dyn Fn(&str) -> bool,
    ) -> Vec<Planned> {
        let mut out = Vec::new();
        let topics: BTreeSet<String> = wanted.iter().map(|w| w.topic.clone()).collect();
        // Withdrawals first: they make room under the per-plugin cap.
        let gone: Vec<(String, Option<String>)> = self.announced[group as usize]
            .iter()
            .filter(|(topic, _)| !topics.contains(*topic))
            .map(|(t, o)| (t.clone(), o.clone()))
            .collect();
        let mut withdrawing: HashMap<Option<String>, usize> = HashMap::new();
        for (topic, owner) in gone {
            if !self.publishes.try_take() {
                // The rest wait for the next round.
                return out;
            }
            *withdrawing.entry(owner).or_insert(0) += 1;
            out.push(Planned::Clear { group, topic });
        }
        let mut adding: HashMap<String, usize> = HashMap::new();
        let mut refused: BTreeMap<String, (usize, &'static str)> = BTreeMap::new();
        for w in wanted {
            if self.on_connection.contains(&w.topic) {
                continue;
            }
            let known = self.announced[group as usize].contains_key(&w.topic);
            if let (Some(plugin), false) = (w.owner.as_deref(), known) {
                let has = (self.owned_by(plugin) + adding.get(plugin).copied().unwrap_or(0))
                    .saturating_sub(
                        withdrawing
                            .get(&Some(plugin.to_string()))
                            .copied()
                            .unwrap_or(0),
                    );
                let why = if has >= MAX_ENTITIES_PER_PLUGIN {
                    Some("it has the most entities a plugin may have")
                } else if !self
                    .new_entities
                    .entry(plugin.to_string())
                    .or_insert_with(|| TokenBucket::new(NEW_ENTITY_BURST, NEW_ENTITY_EVERY))
                    .try_take()
                {
                    Some("it is adding new ones faster than the rate below")
                } else {
                    None
                };
                if let Some(why) = why {
                    refused.entry(plugin.to_string()).or_insert((0, why)).0 += 1;
                    continue;
                }
                *adding.entry(plugin.to_string()).or_insert(0) += 1;
            }
            if !self.publishes.try_take() {
                // The rest wait for the next round.
                break;
            }
            out.push(Planned::Config {
                group,
                topic: w.topic,
                payload: w.payload,
                owner: w.owner,
            });
        }
        for (plugin, (n, why)) in refused {
            if running(&plugin) && self.volatile.insert(plugin.clone()) {
                self.log.line(|| {
                    format!(
                        "plugin `{plugin}` keeps reporting new sensor ids: its Home Assistant \
                         entities will be withdrawn when the host stops"
                    )
                });
            }
            self.log.line(|| {
                format!(
                    "not announcing {n} new Home Assistant entities of plugin `{plugin}`: {why} \
                     ({MAX_ENTITIES_PER_PLUGIN} at once; {NEW_ENTITY_BURST} new at once, then one \
                     per {} s); its values are still published in the state document",
                    NEW_ENTITY_EVERY.as_secs()
                )
            });
        }
        out
    }

    /// `topic` was published as a config.
    pub fn published(&mut self, group: Group, topic: &str, owner: Option<String>) {
        self.on_connection.insert(topic.to_string());
        self.announced[group as usize].insert(topic.to_string(), owner);
    }

    /// `topic`'s config was withdrawn.
    pub fn cleared(&mut self, group: Group, topic: &str) {
        self.on_connection.remove(topic);
        self.announced[group as usize].remove(topic);
        self.log
            .line(|| format!("withdrew the Home Assistant entity {topic}"));
    }

    /// Every announced config topic.
    pub fn all(&self) -> Vec<String> {
        self.announced
            .iter()
            .flat_map(|g| g.keys().cloned())
            .collect()
    }

    /// Forgets everything announced (after withdrawing it all).
    pub fn forget(&mut self) {
        self.announced = Default::default();
        self.on_connection.clear();
    }

    /// Topics to withdraw at a clean stop: those of plugins whose entities
    /// came and went while they ran.
    pub fn at_stop(&self) -> Vec<String> {
        self.announced
            .iter()
            .flat_map(|g| g.iter())
            .filter(|(_, owner)| owner.as_ref().is_some_and(|o| self.volatile.contains(o)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    fn owned_by(&self, plugin: &str) -> usize {
        self.announced
            .iter()
            .flat_map(|g| g.values())
            .filter(|o| o.as_deref() == Some(plugin))
            .count()
    }

    /// Lines the log budget held back so far (for tests and summaries).
    pub fn suppressed(&self) -> u64 {
        self.log.suppressed
    }
}

/// [`LOG_LINES`] lines a minute; then a count, reported with the next line
/// logged after the minute.
#[derive(Default)]
struct LogBudget {
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
    in_window: u64,
}

impl LogBudget {
    fn line(&mut self, text: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(60))
        {
            if self.in_window > 0 {
                log::info!(target: "mqtt", "{} more discovery log lines held back in the last minute (at most {LOG_LINES} a minute)", self.in_window);
            }
            self.window = Some(now);
            self.lines = 0;
            self.in_window = 0;
        }
        if self.lines < LOG_LINES {
            self.lines += 1;
            log::info!(target: "mqtt", "{}", text());
        } else {
            self.suppressed += 1;
            self.in_window += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wanted(owner: Option<&str>, keys: impl IntoIterator<Item = String>) -> Vec<Wanted> {
        keys.into_iter()
            .map(|k| Wanted {
                topic: format!("ha/sensor/pi/{k}/config"),
                payload: json!({"name": k}),
                owner: owner.map(str::to_string),
            })
            .collect()
    }

    /// Plans, then reports every message as sent, like the MQTT thread.
    fn send(a: &mut Announcements, group: Group, w: Vec<Wanted>) -> (usize, usize) {
        let planned = a.plan(group, w, &|p| p != "gone");
        let (mut configs, mut clears) = (0, 0);
        for p in planned {
            match p {
                Planned::Config {
                    group,
                    topic,
                    owner,
                    ..
                } => {
                    a.published(group, &topic, owner);
                    configs += 1;
                }
                Planned::Clear { group, topic } => {
                    a.cleared(group, &topic);
                    clears += 1;
                }
            }
        }
        (configs, clears)
    }

    /// No limit on discovery messages as such.
    fn unthrottled() -> Announcements {
        Announcements::with_publish_rate(TokenBucket::new(100_000, Duration::from_secs(3600)))
    }

    #[test]
    fn stable_entities_are_announced_once_per_connection() {
        let mut a = unthrottled();
        let keys = || (0..5).map(|i| format!("t{i}"));
        assert_eq!(
            send(&mut a, Group::Sensors, wanted(Some("dht22"), keys())),
            (5, 0)
        );
        assert_eq!(
            send(&mut a, Group::Sensors, wanted(Some("dht22"), keys())),
            (0, 0)
        );
        a.new_connection();
        assert_eq!(
            send(&mut a, Group::Sensors, wanted(Some("dht22"), keys())),
            (5, 0)
        );
        // Gone from the readings: withdrawn. A sensor that comes and goes
        // is no churn: its entities stay at a stop.
        assert_eq!(
            send(
                &mut a,
                Group::Sensors,
                wanted(Some("dht22"), keys().take(3))
            ),
            (0, 2)
        );
        assert_eq!(
            send(&mut a, Group::Sensors, wanted(Some("dht22"), keys())),
            (2, 0)
        );
        assert!(a.at_stop().is_empty());
    }

    #[test]
    fn a_plugin_inventing_ids_is_held_to_its_cap_and_rate() {
        let mut a = unthrottled();
        let (mut configs, mut clears) = (0, 0);
        // 32 new ids × 2 fields per poll, 20 polls, next to a real plugin.
        for poll in 0..20 {
            let mut w = wanted(Some("dht22"), ["temp".to_string()]);
            w.extend(wanted(
                Some("hostile"),
                (0..64).map(move |i| format!("churn_{poll}_{i}")),
            ));
            let (c, r) = send(&mut a, Group::Sensors, w);
            configs += c;
            clears += r;
        }
        // The first poll's 64 fit the burst (and dht22's one); then the
        // bucket refills at one per 10 s, which these instant polls never
        // reach.
        assert_eq!(configs, 65, "{configs} entities announced");
        assert_eq!(clears, 64, "{clears} withdrawn");
        assert!(a.suppressed() > 50, "the log budget held most lines back");
        // At stop the churning plugin's entities go, dht22's stays.
        let at_stop = a.at_stop();
        assert!(at_stop.iter().all(|t| t.contains("churn")), "{at_stop:?}");
    }

    #[test]
    fn a_plugin_has_at_most_its_cap_of_entities() {
        let mut a = unthrottled();
        let mut w = wanted(Some("big"), (0..100).map(|i| format!("many_{i}")));
        w.extend(wanted(None, (0..3).map(|i| format!("system_{i}"))));
        w.extend(wanted(Some("dht22"), ["temp".to_string()]));
        // The host's own entities and other plugins are not limited by it.
        assert_eq!(
            send(&mut a, Group::Sensors, w).0,
            MAX_ENTITIES_PER_PLUGIN + 3 + 1
        );
    }

    #[test]
    fn a_plugin_over_its_cap_is_withdrawn_at_stop() {
        let mut a = unthrottled();
        let w = wanted(Some("big"), (0..100).map(|i| format!("many_{i}")));
        send(&mut a, Group::Sensors, w);
        assert_eq!(a.at_stop().len(), MAX_ENTITIES_PER_PLUGIN);
    }

    #[test]
    fn a_removed_plugin_is_withdrawn_but_not_volatile() {
        let mut a = unthrottled();
        send(
            &mut a,
            Group::Sensors,
            wanted(Some("gone"), ["x".to_string()]),
        );
        assert_eq!(send(&mut a, Group::Sensors, vec![]), (0, 1));
        assert!(a.at_stop().is_empty());
    }

    #[test]
    fn discovery_publishes_share_one_rate() {
        let mut a = Announcements::default();
        let mut w = Vec::new();
        for plugin in 0..10 {
            let name = format!("p{plugin}");
            w.extend(wanted(
                Some(&name),
                (0..20).map(move |i| format!("p{plugin}_{i}")),
            ));
        }
        assert_eq!(
            send(&mut a, Group::Sensors, w.clone()).0,
            PUBLISH_BURST as usize,
            "the rest wait for a later round"
        );
        // The next round, moments later, sends what the refill allows (10
        // a second) and withdraws nothing.
        let (configs, clears) = send(&mut a, Group::Sensors, w);
        assert!(configs < 10 && clears == 0, "{configs} {clears}");
    }
}
