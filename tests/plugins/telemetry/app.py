# wit-world: telemetry-sensor-plugin
"""Test plugin for the `telemetry` interface (tests/it/mqtt.rs).

Each poll publishes `answer` = 42 "units" and tries a bad name; the
reading's message reports what the host said about the bad one.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import gpio_provider, telemetry
from wit_world.imports.types import AlertLevel, Dht22Reading


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        telemetry.publish("answer", 42.0, "units")
        try:
            telemetry.publish("Bad-Name", 1.0, "")
            refused = "accepted"
        except Err as e:
            refused = str(e.value)
        return [Dht22Reading(sensor_id="telemetry-0", temperature=20.0, humidity=50.0,
                             timestamp_ms=gpio_provider.get_timestamp_ms(),
                             alert=AlertLevel.OK, message=refused)]
