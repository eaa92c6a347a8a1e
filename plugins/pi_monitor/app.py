"""Pi monitor plugin: CPU temperature, RAM use and uptime, on LED 0.

A Raspberry Pi starts throttling at 80 °C (85 °C on a Pi 5), so the CPU
temperature warns at 70 °C and alarms at 80 °C by default; memory warns at
85 % use and alarms at 95 %. Levels use hysteresis and survive reloads.

Settings ([plugins.pi_monitor.settings] in config/host.toml):
  led, cpu_warn_c, cpu_alarm_c, cpu_hysteresis_c, ram_warn_pct,
  ram_alarm_pct, ram_hysteresis_pct, beep_count, beep_ms
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import gpio_provider, system
from wit_world.imports.types import AlertLevel, PiStats

import alerts
from plugin_support import best_effort, load_alert_state, save_state, setting, signal_level, warn

LEVELS = (AlertLevel.OK, AlertLevel.WARN, AlertLevel.ALARM)
MIB = 1024 * 1024


def checks():
    return [
        alerts.Check("cpu", "CPU", " °C", setting("cpu_warn_c", 70.0), setting("cpu_alarm_c", 80.0),
                     setting("cpu_hysteresis_c", 3.0)),
        alerts.Check("ram", "RAM use", " %", setting("ram_warn_pct", 85.0),
                     setting("ram_alarm_pct", 95.0), setting("ram_hysteresis_pct", 3.0)),
    ]


class PiMonitorLogic(exports.PiMonitorLogic):
    def poll(self) -> PiStats:
        saved = load_alert_state()
        now = gpio_provider.get_timestamp_ms()
        values = {}
        problems = []
        try:
            cpu = gpio_provider.get_cpu_temp()
            values["cpu"] = cpu
        except Err as e:
            cpu = 0.0
            problems.append(f"CPU temperature unavailable: {e.value}")
        try:
            stats = system.get_stats()
            ram_used_mb = stats.ram_used_bytes // MIB
            ram_total_mb = stats.ram_total_bytes // MIB
            if stats.ram_total_bytes:
                values["ram"] = 100.0 * stats.ram_used_bytes / stats.ram_total_bytes
            uptime_s, load = stats.uptime_s, stats.load_1m
        except Err as e:
            ram_used_mb = ram_total_mb = uptime_s = 0
            load = 0.0
            problems.append(f"system stats unavailable: {e.value}")
        for p in problems:
            warn(p)

        level, levels, message = alerts.evaluate(checks(), values, saved["levels"])
        if problems:
            message = "; ".join(([message] if message else []) + problems)
        if level != saved["level"] or levels != saved["levels"]:
            best_effort("saving the alert state", save_state, "alert", {"level": level, "levels": levels})
        signal_level(setting("led", 0), alerts.COLORS[level],
                     level == alerts.ALARM and saved["level"] < alerts.ALARM,
                     setting("beep_count", 2), setting("beep_ms", 300), 200)
        return PiStats(cpu_temp_c=round(cpu, 1), ram_used_mb=ram_used_mb, ram_total_mb=ram_total_mb,
                       uptime_s=uptime_s, load_1m=round(load, 2), timestamp_ms=now,
                       alert=LEVELS[level], message=message)
