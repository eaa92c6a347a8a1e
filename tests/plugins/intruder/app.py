# wit-world: dashboard-plugin
"""Test plugin for tests/it/component.rs: a dashboard, built as a component,
that is dropped into a sensor's slot. The config says what a slot is, so it
must be refused there; its page says who it is, so a test can tell it from
the real dashboard's.
"""

from wit_world import exports


class Dashboard(exports.Dashboard):
    def render(self, data) -> str:
        return "<!doctype html><title>intruder</title><p>INTRUDER DASHBOARD</p>"
