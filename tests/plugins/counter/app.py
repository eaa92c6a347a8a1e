# wit-world: dht22-plugin
"""Test plugin for hot reload (tests/it/reload.rs) and the config tests.

Every poll adds one to a count kept in the host's state store and reports
it as the reading's temperature, so a count that goes on across a reload
or a restart shows the state was kept. The humidity is the number of calls
this instance has served (Python globals start afresh in every instance),
and the message names the variant of this file that is running.

Tests write variants of this file by changing the knobs below (one line
each, `NAME = value`):
  TAG               names the variant (the reading's message)
  RAISE_FROM_CALL   raise from this call of each instance on (0: never)
  SLEEP_AT_IMPORT_S seconds to wait while being loaded (a slow start)

Setting `sensor_id` ([plugins.NAME.settings]) names the reading.
"""

import time

from wit_world import exports
from wit_world.imports import gpio_provider, settings, state
from wit_world.imports.types import AlertLevel, Dht22Reading

TAG = "a"
RAISE_FROM_CALL = 0
SLEEP_AT_IMPORT_S = 0

try:
    # An optional shared module (plugins/common/label.py), for the test of
    # changes in common/.
    from label import LABEL
except ImportError:
    LABEL = ""

if SLEEP_AT_IMPORT_S:
    time.sleep(SLEEP_AT_IMPORT_S)

_calls = 0


def sensor_id():
    raw = settings.get("sensor_id")
    return raw.strip('"') if raw else "counter"


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        global _calls
        _calls += 1
        if RAISE_FROM_CALL and _calls >= RAISE_FROM_CALL:
            raise RuntimeError(f"variant {TAG} fails on call {_calls}")
        count = int((state.get("count") or b"0").decode()) + 1
        state.set("count", str(count).encode())
        return [Dht22Reading(sensor_id=sensor_id(), temperature=float(count),
                             humidity=float(_calls),
                             timestamp_ms=gpio_provider.get_timestamp_ms(),
                             alert=AlertLevel.OK, message=f"{TAG}{LABEL}")]
