//! The host's fallback page, served at `/view` while the dashboard plugin
//! is loading or after it failed, so a user never gets a blank screen.

use super::AppState;
use crate::plugins::Health;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The host's plain page: readings and plugin errors, no plugin involved.
/// Asks the shell to reload it every few seconds, so it gives way to the
/// plugin's page once that renders.
pub fn page(state: &AppState) -> String {
    let readings = state.shared.readings();
    let plugins = state.shared.plugins();
    let dashboard = plugins
        .iter()
        .find(|p| p.kind == Some("dashboard") || p.name == "dashboard");
    let why = match dashboard {
        Some(p) if p.status == Health::Loading => {
            "The dashboard plugin is loading (the first start compiles it; this takes a while)."
                .to_string()
        }
        Some(p) if !p.last_error.is_empty() => {
            format!("The dashboard plugin failed: {}", p.last_error)
        }
        Some(_) => "The dashboard plugin has not rendered a page yet.".to_string(),
        None => "No dashboard plugin is configured.".to_string(),
    };
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>wasi-python-host</title>\
         <style>body{font-family:monospace;background:#000;color:#3f3;padding:1em}\
         table{border-collapse:collapse}td,th{border:1px solid #3f3;padding:.3em .6em}\
         .err{color:#f66}</style></head><body><h1>wasi-python-host</h1>",
    );
    html.push_str(&format!(
        "<p class=\"err\" id=\"fallback-reason\">{}</p>",
        escape(&why)
    ));
    html.push_str("<h2>Readings</h2><table><tr><th>sensor</th><th>values</th><th>alert</th><th>message</th></tr>");
    for r in readings.all() {
        let values: Vec<String> = r
            .fields
            .iter()
            .map(|f| {
                let unit = if f.unit.is_empty() {
                    String::new()
                } else {
                    format!(" {}", f.unit)
                };
                format!("{} {:.1}{unit}", f.name, f.value)
            })
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.sensor_id),
            escape(&values.join(" · ")),
            r.alert,
            escape(&r.message)
        ));
    }
    html.push_str("</table>");
    if let Some(s) = &readings.system {
        html.push_str(&format!(
            "<p>CPU {:.1} °C · RAM {}/{} MB · up {} s</p>",
            s.cpu_temp_c, s.ram_used_mb, s.ram_total_mb, s.uptime_s
        ));
    }
    html.push_str("<h2>Plugins</h2><table><tr><th>plugin</th><th>status</th><th>calls</th><th>failures</th><th>last error</th></tr>");
    for p in &plugins {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            escape(&p.name),
            serde_json::to_value(p.status)
                .unwrap_or_default()
                .as_str()
                .unwrap_or(""),
            p.calls,
            p.failures,
            escape(&p.last_error)
        ));
    }
    html.push_str("</table><p>JSON: /api</p><script>setInterval(function(){parent.postMessage({type:'reload'},'*')},5000)</script></body></html>");
    html
}
