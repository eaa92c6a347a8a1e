"""Probes every refusal of the host's capabilities and reports what was
said, so tests/it/testkit.rs can compare the host's words with the test
kit's (plugins/testing/fakehost) for the same calls.

One poll makes every call once and returns one reading `probe` whose
message is a JSON object: case -> the error text (or "ok").
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import (buzzer_controller, gpio_provider, led_controller, state,
                               telemetry)
from wit_world.imports.types import AlertLevel, Dht22Reading, Rgb


def attempt(call, *args):
    try:
        call(*args)
        return "ok"
    except Err as e:
        return str(e.value)


class Dht22Logic(exports.Dht22Logic):
    def poll(self):
        red = Rgb(r=255, g=0, b=0)
        cases = {
            "gpio-ungranted-pin": attempt(gpio_provider.read_dht22, 17),
            "i2c-ungranted-address": attempt(gpio_provider.read_bme680, 0x76),
            "led-ungranted": attempt(led_controller.set_led, 2, red),
            "led-two-ungranted": attempt(led_controller.set_two, 3, red, 2, red),
            "beep-zero": attempt(buzzer_controller.beep, 0, 100, 100),
            "beep-too-many": attempt(buzzer_controller.beep, 11, 100, 100),
            "state-empty-key": attempt(state.set, "", b"x"),
            "state-long-key": attempt(state.set, "k" * 257, b"x"),
            "state-over-quota": attempt(state.set, "big", b"x" * 200),
            "telemetry-bad-name": attempt(telemetry.publish, "Bad-Name", 1.0, ""),
            "telemetry-long-unit": attempt(telemetry.publish, "x", 1.0, "u" * 17),
            "telemetry-not-finite": attempt(telemetry.publish, "x", float("nan"), ""),
        }
        return [Dht22Reading(sensor_id="probe", temperature=20.0, humidity=50.0,
                             timestamp_ms=gpio_provider.get_timestamp_ms(),
                             alert=AlertLevel.OK, message=json.dumps(cases, sort_keys=True))]
