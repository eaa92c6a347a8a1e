"""Dashboard plugin: renders the host's web page.

The host calls ``render(snapshot)`` whenever its data changes and serves the
returned string at ``/view``, inside its own page at ``/`` (a sandboxed
frame: this page has an opaque origin and may not make any request). The
page is one self-contained HTML document in a green-on-black terminal/CRT
style: inline CSS and script, the host's terminal font, nothing external
(the Pi's LAN may have no internet). Every value from the snapshot is
already in the markup, escaped with ``html.escape``. The host's page sends
``/api`` data every ``refresh_ms`` and the last hour's history by
``postMessage`` (``{type: 'api'|'history'|'offline'|'buzzer-result'}``); a
small inline script updates the same elements in place and draws
sparklines. The buzzer buttons post ``{type: 'buzzer', pattern}`` to the
host's page, which sends the authorised request — this page never sees the
control token.

Every sensor gets a card: the DHT22 and BME680 ones in their own cards
(the seed's), and every other sensor (a ``sensor`` plugin's, or the values
a plugin publishes) a card of its own with its fields, units and a
sparkline per field — with no change here for a new sensor.

Live values are marked for the script with ids (``hw``, ``lu``, ``bz``,
``bzmsg``, ``live``, ``down``) and, inside the list containers ``dht``,
``bme``, ``gen``, ``sys``, ``leds`` and ``plugins``, with one element per item
carrying ``data-k`` (its key) and ``data-ts`` (its timestamp), whose fields
carry ``data-f``. Each container's ``data-keys`` lists the keys it shows;
when a list's membership changes (a sensor or plugin comes or goes) the
script asks the host's page to reload it (``{type: 'reload'}``, at most
every few seconds), so the markup is built only here, by ``render``.

The plugin imports only ``log`` and ``settings`` from the host (its
config grants it nothing else). Settings, all optional:
``title`` (string, default "WASI PYTHON HOST") and ``refresh_ms`` (integer,
default 2000).
"""

import html
import math
import time

from wit_world import exports
from wit_world.imports import log, settings

try:
    import tomllib
except ImportError:  # pragma: no cover - CPython >= 3.11 always has it
    tomllib = None

DEFAULT_TITLE = "WASI PYTHON HOST"
DEFAULT_REFRESH_MS = 2000
MIN_REFRESH_MS = 250
MAX_REFRESH_MS = 3_600_000
MAX_TITLE_LEN = 64
EMPTY = '<p class="empty">no reading yet</p>'

_esc = html.escape
_LEVELS = ("ok", "warn", "alarm")
# (upper bound inclusive, meaning, css class) for the BME680 IAQ score.
_IAQ_BANDS = (
    (50, "excellent", "b0"),
    (100, "good", "b1"),
    (150, "lightly polluted", "b2"),
    (200, "moderately polluted", "b3"),
    (250, "heavily polluted", "b4"),
    (350, "severely polluted", "b5"),
)
_IAQ_TOP = ("extremely polluted", "b6")
_PLUGIN_STATUS = {
    "running": "ok",
    "loading": "warn",
    "disabled": "dim",
    "failed": "alarm",
    "quarantined": "alarm",
}

_CSS = """@font-face{font-family:'Terminal3270';src:url('/assets/terminal.woff2') format('woff2');font-display:swap}
:root{--g:#39ff6a;--d:#1c8a3c;--f:#0b3318;--a:#ffb000;--r:#ff3b3b}
*{box-sizing:border-box}
html{background:#000}
body{margin:0;min-height:100vh;padding:14px;color:var(--g);background:radial-gradient(ellipse at 50% 40%,#072a12,#010803 70%,#000);font:20px/1.25 'Terminal3270','Courier New',monospace;text-shadow:0 0 5px #39ff6a80}
body:before{content:"";position:fixed;inset:0;pointer-events:none;z-index:9;background:repeating-linear-gradient(#0000004d 0 1px,#0000 1px 3px);box-shadow:inset 0 0 140px #000d}
b{font-weight:400}
header,footer,.rh,.pl{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:2px 12px}
header{border-bottom:1px solid var(--d);padding-bottom:6px;margin-bottom:14px}
footer{border-top:1px solid var(--d);margin-top:14px;padding-top:6px;font-size:17px;color:var(--d)}
footer b{color:var(--g)}
#hw{text-transform:uppercase}
h1{margin:0;font-size:clamp(30px,6vw,46px);font-weight:400;letter-spacing:3px}
h1:after{content:"_";animation:bl 1s steps(1) infinite}
#down{position:sticky;top:0;z-index:10;margin:0 0 12px;padding:4px;text-align:center;background:var(--r);color:#000;text-shadow:none;animation:bl 1.2s steps(1) infinite}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:14px}
section{min-width:0;padding:8px 12px 10px;border:1px solid var(--d);background:#04180bcc;box-shadow:0 0 14px #39ff6a1f,inset 0 0 22px #39ff6a0d}
h2{display:flex;flex-wrap:wrap;align-items:baseline;gap:0 .5em;margin:-8px -12px 8px;padding:2px 12px;font-size:21px;font-weight:400;letter-spacing:2px;background:var(--f);border-bottom:1px solid var(--d);overflow-wrap:anywhere}
h2:before{content:">";margin-right:.5em}
h2 small{margin-left:auto;min-width:0;color:var(--d);font-size:17px;letter-spacing:0}
.gen{display:contents}
.gen section{border-left-width:3px}
#live:before{content:"● ";animation:bl 2s steps(1) infinite}
.rd{margin:6px 0;padding:2px 0 4px 9px;border-left:3px solid;overflow-wrap:anywhere}
.lv{padding:0 5px;border:1px solid}
.big{font-size:36px;line-height:1;margin-right:14px;white-space:nowrap}
.big small,.u,.kv>:nth-child(odd),.age,.dim,.empty,.led{color:var(--d)}
.big small{font-size:18px}
.kv{display:grid;grid-template-columns:auto 1fr;gap:0 12px}
.msg{color:var(--a)}
.msg:empty{display:none}
.age,.led,#bzmsg,.pl .msg{font-size:16px}
.stale{opacity:.45}
.stale .age:after{content:" STALE";color:var(--a)}
.warn,.warn .lv{color:var(--a)}
.alarm,.alarm .lv{color:var(--r)}
.alarm .lv,.on{animation:bl 1s steps(1) infinite}
.bar{height:10px;margin:3px 0 5px;border:1px solid var(--d)}
.bar i{display:block;height:100%;max-width:100%;background:repeating-linear-gradient(90deg,var(--k) 0 5px,#0000 5px 7px)}
.b0{--k:#39ff6a}.b1{--k:#a6ff4d}.b2{--k:#ffe14d}.b3{--k:#ffb000}.b4{--k:#ff6a00}.b5{--k:#ff3b3b}.b6{--k:#d040ff}
.iaq{color:var(--d)}
.iaq b{color:var(--k)}
.leds{display:flex;flex-wrap:wrap;gap:8px 6px}
.led{width:34px;text-align:center}
.led i{display:block;width:24px;height:24px;margin:2px auto;border-radius:50%;border:1px solid #2a4a33;background:#050c07}
.led i[style]{background:var(--c);box-shadow:0 0 10px 2px var(--c)}
button{font:inherit;color:var(--g);background:0;border:1px solid;padding:4px 14px;margin:6px 8px 4px 0;cursor:pointer;text-shadow:inherit}
button:hover,button:focus-visible{background:var(--g);color:#000;outline:0}
#bzmsg{min-height:1.25em}
.pl{padding:3px 0;border-bottom:1px dashed var(--f)}
.pl .u,.pl .msg{width:100%}
.pl .msg{color:var(--r)}
.empty{margin:0 0 4px}
.empty:before{content:"$ "}
.ch{display:grid;grid-template-columns:repeat(auto-fit,minmax(110px,1fr));gap:2px 10px;margin-top:4px}
.ch>div:empty{display:none}
.cl{font-size:15px;color:var(--d)}
.cl b{color:var(--g)}
.ch svg{display:block;width:100%;height:28px;overflow:visible}
.ch polyline{fill:none;stroke:var(--g);stroke-width:1.5;vector-effect:non-scaling-stroke}
.ch polygon{fill:#39ff6a26;stroke:none}
@keyframes bl{50%{opacity:.15}}
@media (max-width:420px){body{padding:8px;font-size:18px}.big{font-size:30px}}
@media (max-width:300px){.grid{grid-template-columns:1fr}}
@media (prefers-reduced-motion:reduce){*{animation:none!important}}"""

_JS = r"""(function(){
var B=document.body,R=+B.dataset.r||2e3,ST=Math.max(3*R,1e4),off=+B.dataset.now?B.dataset.now-Date.now():0,LV=['ok','warn','alarm'],
IQ=[[50,'excellent'],[100,'good'],[150,'lightly polluted'],[200,'moderately polluted'],[250,'heavily polluted'],[350,'severely polluted'],[1/0,'extremely polluted']],
PS={running:'ok',loading:'warn',disabled:'dim',failed:'alarm',quarantined:'alarm'},D='\u2014';
function $(i){return document.getElementById(i)}
function fx(v,n){return typeof v=='number'&&isFinite(v)?v.toFixed(n):D}
function ago(ms){var s=Math.max(0,Math.round(ms/1e3));return(s<60?s+' s':s<3600?(s/60|0)+' m':s<86400?(s/3600|0)+' h':(s/86400|0)+' d')+' ago'}
function upt(s){s=Math.max(0,s|0);var d=s/86400|0,h=s%86400/3600|0,m=s%3600/60|0;return d?d+'d '+h+'h '+m+'m':h?h+'h '+m+'m':m?m+'m '+s%60+'s':s+'s'}
function fill(e,o){for(var f in o){var x=e.querySelector('[data-f='+f+']');if(x)x.textContent=o[f]}}
function lvl(e,a){a=LV.indexOf(a)<0?'warn':a;LV.forEach(function(c){e.classList.toggle(c,c==a)});fill(e,{alert:a.toUpperCase()})}
function bar(e,p,c){var b=e.querySelector('.bar');if(b){b.className='bar '+c;b.firstChild.style.width=Math.max(0,Math.min(100,p))+'%'}}
function relay(){parent.postMessage({type:'reload'},'*')}
function sync(id,it,key,upd){var c=$(id),m={},ks=it.map(key);[].forEach.call(c.children,function(e){m[e.dataset.k]=e});
it.forEach(function(x,i){var e=m[ks[i]];if(e)upd(e,x)});if(c.dataset.keys!==ks.join('|'))relay()}
function rd(e,r){e.dataset.ts=r.timestamp_ms||0;lvl(e,r.alert);fill(e,{temp:fx(r.temperature,1),hum:fx(r.humidity,1),msg:r.message||''})}
function bme(e,r){rd(e,r);if(r.iaq_score==null){fill(e,{pres:fx(r.pressure,1),gas:fx(r.gas_resistance,1),iaq:'\u2014',band:'no gas reading yet'});e.querySelector('.iaq').className='iaq dim';bar(e,0,'b0');return}var q=Math.max(0,r.iaq_score|0),i=0;while(q>IQ[i][0])i++;fill(e,{pres:fx(r.pressure,1),gas:fx(r.gas_resistance,1),iaq:q,band:IQ[i][1]});e.querySelector('.iaq').className='iaq b'+i;bar(e,q/5,'b'+i)}
function sys(e,s){e.dataset.ts=s.timestamp_ms||0;lvl(e,s.alert);var t=s.ram_total_mb,p=t?100*s.ram_used_mb/t:0;fill(e,{cpu:fx(s.cpu_temp_c,1),ram:s.ram_used_mb+' / '+t+' MB'+(t?' ('+Math.round(p)+'%)':''),up:upt(s.uptime_s),load:fx(s.load_1m,2),msg:s.message||''});bar(e,p,p>90?'b5':p>75?'b3':'b0')}
function led(e,l){var i=e.firstChild;l.r|l.g|l.b?i.style.setProperty('--c','#'+[l.r,l.g,l.b].map(function(v){return(256|v).toString(16).slice(1)}).join('')):i.removeAttribute('style')}
function plg(e,p){e.querySelector('[data-f=st]').className=PS[p.status]||'warn';fill(e,{st:p.status,ver:p.version||D,lr:p.loaded_at_ms?ago(Date.now()+off-p.loaded_at_ms):D,calls:p.calls,fails:p.failures,err:p.last_error||''})}
var CH={temperature:['temp','\u00b0C',1],humidity:['hum','%',1],pressure:['pres','hPa',1],iaq_score:['iaq','',0],cpu_temp_c:['cpu','\u00b0C',1]},
NF={sensor_id:1,timestamp_ms:1,alert:1,message:1,plugin:1,units:1,kind:1};
function dec(v){return v%1?(Math.abs(v)<10?2:1):0}
function gen(e,r){e.dataset.ts=r.timestamp_ms||0;lvl(e,r.alert);var o={msg:r.message||''};for(var k in r)if(!NF[k]&&typeof r[k]=='number')o['x_'+k]=fx(r[k],dec(r[k]));fill(e,o)}
function spark(e,ps,f,u){var c=CH[f]||[f.replace(/_/g,' '),u||'',1],n=ps.length,lo=1/0,hi=-1/0;if(!n){e.innerHTML='';return}
ps.forEach(function(p){lo=Math.min(lo,p[2]);hi=Math.max(hi,p[3])});
var t0=ps[0][0],t1=ps[n-1][0];function X(t){return n>1?(100*(t-t0)/(t1-t0)).toFixed(2):50}function Y(v){return hi>lo?(30*(hi-v)/(hi-lo)).toFixed(2):15}
var l=ps.map(function(p){return X(p[0])+','+Y(p[1])}).join(' '),g=ps.map(function(p){return X(p[0])+','+Y(p[3])}).concat(ps.slice().reverse().map(function(p){return X(p[0])+','+Y(p[2])})).join(' ');
e.innerHTML='<span class="cl">'+c[0]+' <b>'+fx(lo,c[2])+'\u2013'+fx(hi,c[2])+'</b>'+c[1]+'</span><svg viewBox="0 0 100 30" preserveAspectRatio="none" role="img" aria-label="'+c[0]+' over the last hour"><polygon points="'+g+'"/><polyline points="'+l+'"/></svg>'}
function hist(h){(h.series||[]).forEach(function(s){var k=s.sensor_id=='system'?'sys':s.sensor_id;
[].forEach.call(document.querySelectorAll('[data-k]'),function(r){if(r.dataset.k===k){var e=r.querySelector('[data-c='+s.field+']');if(e)spark(e,s.points||[],s.field,s.unit)}})})}
function sid(r){return r.sensor_id}
function tick(){var n=Date.now()+off;document.querySelectorAll('[data-ts]').forEach(function(e){var t=+e.dataset.ts,d=n-t;fill(e,{age:t?ago(d):D});e.classList.toggle('stale',!!t&&d>ST)})}
function apply(d){var rs=d.readings||[],z=d.buzzer&&d.buzzer.active,b=$('bz');
sync('dht',rs.filter(function(r){return r.kind=='dht22'}),sid,rd);
sync('bme',rs.filter(function(r){return r.kind=='bme680'}),sid,bme);
sync('gen',rs.filter(function(r){return r.kind=='sensor'}),sid,gen);
sync('sys',d.system?[d.system]:[],function(){return'sys'},sys);
sync('leds',d.leds||[],function(l,i){return''+(l.index==null?i:l.index)},led);
sync('plugins',d.plugins||[],function(p){return p.name},plg);
b.textContent=z?'ACTIVE':'IDLE';b.className=z?'alarm on':'dim';
$('hw').textContent=d.hardware||'?';
if(d.last_update)$('lu').textContent=new Date(d.last_update).toISOString().slice(0,19).replace('T',' ')+' UTC'}
function up(ok){$('down').hidden=ok;var l=$('live');l.textContent=ok?'LIVE':'OFFLINE';l.className=ok?'':'alarm on'}
var seen=0;
addEventListener('message',function(e){if(e.source!==parent)return;var m=e.data||{};seen=Date.now();
if(m.type=='api'){if(m.server_ms)off=m.server_ms+500-Date.now();up(1);try{apply(m.data)}catch(x){console.error(x)}tick()}
else if(m.type=='offline')up(0);
else if(m.type=='history'){try{hist(m.data)}catch(x){console.error(x)}}
else if(m.type=='buzzer-result'){var b=$('bzmsg');b.className=m.ok?'':'alarm';b.textContent=m.ok?'sent: '+m.pattern:('error: '+(m.error||'?')).slice(0,90)}});
window.bz=function(p){var m=$('bzmsg');m.className='dim';m.textContent='sending '+p+'\u2026';parent.postMessage({type:'buzzer',pattern:p},'*')};
setInterval(function(){if(seen&&Date.now()-seen>Math.max(3*R,1e4))up(0)},1e3);
tick();setInterval(tick,1e3);parent.postMessage({type:'ready',refresh_ms:R},'*')})()"""

_HEAD = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
    '<meta name="color-scheme" content="dark"><title>'
)
_STYLE = "</title><style>" + _CSS + "</style></head>"
_FOOT = '</main><footer><span>backend: <b id="hw">'
_FOOT_LU = '</b></span><span>last update: <b id="lu">'
_END = ("</b></span><span>wasi-python-host</span></footer><script>" + _JS
        + "</script></body></html>")

_warned = set()
_BAD = object()  # no usable value


# ---------------------------------------------------------------- settings

def parse_toml_scalar(raw):
    """Parse one TOML scalar (`"text"`, `2000`, `1.5`, `true`) to Python."""
    if tomllib is not None:
        return tomllib.loads("v = " + raw)["v"]
    s = raw.strip()  # fallback for runtimes without tomllib
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        body = s[1:-1]
        if s[0] == '"':
            body = body.replace('\\"', '"').replace("\\\\", "\\")
        return body
    if s in ("true", "false"):
        return s == "true"
    t = s.replace("_", "")
    try:
        return int(t, 0) if t[:2].lower() in ("0x", "0o", "0b") else int(t)
    except ValueError:
        return float(t)


def _warn_once(key, raw, why):
    if (key, raw) in _warned:
        return
    _warned.add((key, raw))
    try:
        log.write(log.Level.WARN, "setting %s = %s: %s" % (key, raw, why))
    except Exception:
        pass


def _setting(key):
    """(raw TOML text or None, parsed value or _BAD)."""
    try:
        raw = settings.get(key)
    except Exception as e:
        _warn_once(key, None, "ignored, settings.get failed: %s" % e)
        return None, _BAD
    if raw is None:
        return None, _BAD
    try:
        return raw, parse_toml_scalar(raw)
    except Exception as e:
        _warn_once(key, raw, "ignored, not a TOML value (%s)" % e)
        return None, _BAD


def load_settings():
    """(title, refresh_ms) from the plugin settings, defaults on any error."""
    raw, title = _setting("title")
    if isinstance(title, str) and title.strip():
        title = title.strip()[:MAX_TITLE_LEN]
    else:
        if raw is not None:
            _warn_once("title", raw, "ignored, expected a non-empty string")
        title = DEFAULT_TITLE
    raw, refresh = _setting("refresh_ms")
    if isinstance(refresh, (int, float)) and not isinstance(refresh, bool) and math.isfinite(refresh):
        if not MIN_REFRESH_MS <= refresh <= MAX_REFRESH_MS:
            _warn_once("refresh_ms", raw, "clamped to %d..%d" % (MIN_REFRESH_MS, MAX_REFRESH_MS))
        refresh = int(min(max(refresh, MIN_REFRESH_MS), MAX_REFRESH_MS))
    else:
        if raw is not None:
            _warn_once("refresh_ms", raw, "ignored, expected an integer")
        refresh = DEFAULT_REFRESH_MS
    return title, refresh


# ---------------------------------------------------------------- formatting

def _fx(v, n=1):
    try:
        return ("%%.%df" % n) % v if math.isfinite(v) else "\u2014"
    except (TypeError, ValueError):
        return "\u2014"


def _level(a):
    name = getattr(a, "name", a)
    name = str(name).lower()
    return name if name in _LEVELS else "warn"


def ago(ms):
    s = max(0, int(round(ms / 1000)))
    if s < 60:
        return "%d s ago" % s
    if s < 3600:
        return "%d m ago" % (s // 60)
    if s < 86400:
        return "%d h ago" % (s // 3600)
    return "%d d ago" % (s // 86400)


def uptime(s):
    s = max(0, int(s))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return "%dd %dh %dm" % (d, h, m)
    if h:
        return "%dh %dm" % (h, m)
    if m:
        return "%dm %ds" % (m, s % 60)
    return "%ds" % s


def iaq_band(score):
    """(meaning, css class) of a BME680 IAQ score."""
    for top, name, cls in _IAQ_BANDS:
        if score <= top:
            return name, cls
    return _IAQ_TOP


def _iso(ms):
    if not ms:
        return "\u2014"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return "\u2014"


class _Ctx:
    __slots__ = ("now", "stale_ms")

    def __init__(self, now, stale_ms):
        self.now = now
        self.stale_ms = stale_ms

    def age(self, ts):
        """(age text, stale?) of a reading taken at `ts` (ms)."""
        if not ts or not self.now:
            return "\u2014", False
        d = self.now - ts
        return ago(d), d > self.stale_ms


# ---------------------------------------------------------------- cards
# Each list card is a container (id + data-keys) of items (data-k, data-ts)
# whose live fields are <b data-f=NAME>; the page script fills the same
# fields from /api, so keep names in step with _JS.

def _row_open(a, ctx, key, label, alert, ts):
    lv = _level(alert)
    age_text, stale = ctx.age(ts)
    a('<div class="rd %s%s" data-k="%s" data-ts="%d"><div class="rh"><span>%s</span>'
      '<b class="lv" data-f=alert>%s</b></div>'
      % (lv, " stale" if stale else "", key, ts, label, lv.upper()))
    return age_text


def _row_close(a, message, age_text):
    a('<div class="msg" data-f=msg>%s</div><div class="age" data-f=age>%s</div></div>'
      % (_esc(message), age_text))


def _th(a, r):
    a('<div><span class="big"><b data-f=temp>%s</b><small>\u00b0C</small></span>'
      '<span class="big"><b data-f=hum>%s</b><small>%%</small></span></div>'
      % (_fx(r.temperature), _fx(r.humidity)))


def _charts(a, fields):
    """Placeholders the page script fills with the last hour's sparklines."""
    a('<div class="ch">%s</div>' % "".join('<div data-c=%s></div>' % f for f in fields))


def _list_open(a, title, sub, cid, keys, cls=""):
    a('<section><h2>%s<small>%s</small></h2><div id="%s"%s data-keys="%s">'
      % (title, sub, cid, cls, _esc("|".join(keys))))
    if not keys:
        a(EMPTY)


def _card_dht(a, ctx, rows):
    _list_open(a, "DHT22", "temp \u00b7 humidity", "dht", [r.sensor_id for r in rows])
    for r in rows:
        sid = _esc(r.sensor_id)
        age_text = _row_open(a, ctx, sid, sid, r.alert, r.timestamp_ms)
        _th(a, r)
        _charts(a, ("temperature", "humidity"))
        _row_close(a, r.message, age_text)
    a("</div></section>")


def _card_bme(a, ctx, rows):
    _list_open(a, "BME680", "air quality", "bme", [r.sensor_id for r in rows])
    for r in rows:
        sid = _esc(r.sensor_id)
        age_text = _row_open(a, ctx, sid, sid, r.alert, r.timestamp_ms)
        _th(a, r)
        # Above 500 is "no score" (no valid gas reading yet), never a number.
        scored = 0 <= r.iaq_score <= 500
        iaq = int(r.iaq_score) if scored else 0
        band, cls = iaq_band(iaq) if scored else ("no gas reading yet", "dim")
        a('<div class="kv"><span>pressure</span><span><b data-f=pres>%s</b> hPa</span>'
          '<span>gas</span><span><b data-f=gas>%s</b> k\u03a9</span></div>'
          '<div class="iaq %s">IAQ <b data-f=iaq>%s</b> \u00b7 <b data-f=band>%s</b></div>'
          '<div class="bar %s"><i style="width:%.0f%%"></i></div>'
          % (_fx(r.pressure), _fx(r.gas_resistance), cls, iaq if scored else "\u2014", band, cls,
             min(100.0, iaq / 5)))
        _charts(a, ("temperature", "humidity", "pressure", "iaq_score"))
        _row_close(a, r.message, age_text)
    a("</div></section>")


def _card_sensors(a, ctx, readings, known):
    """A card per sensor that is neither the DHT22's nor the BME680's: its
    fields with their units, a sparkline each. They live in one container
    (`gen`, laid out as if its cards were the grid's own) so the script
    notices a sensor coming or going."""
    rows = [f for f in readings if f.reading.sensor_id not in known]
    a('<div id="gen" class="gen" data-keys="%s">'
      % _esc("|".join(f.reading.sensor_id for f in rows)))
    for f in rows:
        r = f.reading
        sid = _esc(r.sensor_id)
        lv = _level(r.alert)
        age_text, stale = ctx.age(r.timestamp_ms)
        a('<section class="%s%s" data-k="%s" data-ts="%d"><h2>%s<small>%s</small></h2>'
          '<div class="rh"><span>%s</span><b class="lv" data-f=alert>%s</b></div><div class="kv">'
          % (lv, " stale" if stale else "", sid, r.timestamp_ms, sid, _esc(f.plugin),
             "sensor", lv.upper()))
        for fld in r.fields:
            digits = 0 if float(fld.value).is_integer() else (2 if abs(fld.value) < 10 else 1)
            a('<span>%s</span><span><b data-f=x_%s>%s</b> <span class="u">%s</span></span>'
              % (_esc(fld.name.replace("_", " ")), fld.name, _fx(fld.value, digits), _esc(fld.unit)))
        a("</div>")
        _charts(a, [fld.name for fld in r.fields])
        a('<div class="msg" data-f=msg>%s</div><div class="age" data-f=age>%s</div></section>'
          % (_esc(r.message), age_text))
    a("</div>")


def _card_sys(a, ctx, s):
    _list_open(a, "SYSTEM HEALTH", "rpi", "sys", ["sys"] if s else [])
    if s is not None:
        age_text = _row_open(a, ctx, "sys", "pi-monitor", s.alert, s.timestamp_ms)
        used, total = int(s.ram_used_mb), int(s.ram_total_mb)
        pct = 100.0 * used / total if total > 0 else 0.0
        ram = "%d / %d MB" % (used, total) + (" (%d%%)" % round(pct) if total > 0 else "")
        bar = "b5" if pct > 90 else "b3" if pct > 75 else "b0"
        a('<div><span class="big"><b data-f=cpu>%s</b><small>\u00b0C cpu</small></span></div>'
          '<div class="kv"><span>ram</span><b data-f=ram>%s</b></div>'
          '<div class="bar %s"><i style="width:%.0f%%"></i></div>'
          '<div class="kv"><span>uptime</span><b data-f=up>%s</b>'
          '<span>load 1m</span><b data-f=load>%s</b></div>'
          % (_fx(s.cpu_temp_c), ram, bar, min(100.0, pct), uptime(s.uptime_s), _fx(s.load_1m, 2)))
        _charts(a, ("cpu_temp_c",))
        _row_close(a, s.message, age_text)
    a("</div></section>")


def _card_leds(a, leds):
    _list_open(a, "LED STRIP", "ws2812b", "leds", [str(i) for i in range(len(leds))],
               ' class="leds"')
    for i, c in enumerate(leds):
        r, g, b = int(c.r) & 255, int(c.g) & 255, int(c.b) & 255
        style = ' style="--c:#%02x%02x%02x"' % (r, g, b) if r | g | b else ""
        a('<div class="led" data-k="%d"><i%s></i>%d</div>' % (i, style, i))
    a("</div></section>")


def _card_buzzer(a, active):
    a('<section><h2>BUZZER<small>gpio</small></h2>'
      '<div>state: <b id="bz" class="%s">%s</b></div>'
      '<button onclick="bz(\'beep\')">[ BEEP ]</button>'
      '<button onclick="bz(\'long\')">[ LONG BEEP ]</button>'
      '<div id="bzmsg" class="dim" role="status"></div></section>'
      % (("alarm on", "ACTIVE") if active else ("dim", "IDLE")))


def _card_plugins(a, plugins):
    _list_open(a, "PLUGINS", "wasm", "plugins", [p.name for p in plugins])
    for p in plugins:
        name = _esc(p.name)
        a('<div class="pl" data-k="%s"><span>%s</span><b data-f=st class="%s">%s</b>'
          '<span class="u">v<b data-f=ver>\u2014</b> \u00b7 loaded <b data-f=lr>\u2014</b></span>'
          '<span class="u">calls <b data-f=calls>%d</b> \u00b7 failures <b data-f=fails>%d</b>'
          '</span><span class="msg" data-f=err>%s</span></div>'
          % (name, name, _PLUGIN_STATUS.get(p.status, "warn"), _esc(p.status),
             int(p.calls), int(p.failures), _esc(p.last_error)))
    a("</div></section>")


# ---------------------------------------------------------------- page

def render_page(data, title, refresh_ms):
    """The whole HTML page for `data` (a dashboard.Snapshot)."""
    now = int(data.last_update_ms or 0)
    ctx = _Ctx(now, max(3 * refresh_ms, 10_000))
    t = _esc(title)
    out = [_HEAD, t, _STYLE,
           '<body data-r="%d" data-now="%d"><header><h1>%s</h1>'
           '<span>refresh %g s \u00b7 <b id="live">LIVE</b></span></header>'
           '<div id="down" role="alert" hidden>HOST UNREACHABLE \u2014 retrying</div>'
           '<main class="grid">' % (refresh_ms, now, t, refresh_ms / 1000)]
    a = out.append
    _card_dht(a, ctx, data.dht22)
    _card_bme(a, ctx, data.bme680)
    known = {r.sensor_id for r in list(data.dht22) + list(data.bme680)}
    _card_sensors(a, ctx, getattr(data, "readings", []), known)
    _card_sys(a, ctx, data.system)
    _card_leds(a, data.leds)
    _card_buzzer(a, data.buzzer_active)
    _card_plugins(a, data.plugins)
    out += (_FOOT, _esc(data.hardware), _FOOT_LU, _iso(now), _END)
    return "".join(out)


def error_page(err):
    return ('%s%s%s<body><header><h1>%s</h1></header><div id="down">DASHBOARD RENDER ERROR'
            ' \u2014 %s</div><script>setTimeout(function(){parent.postMessage({type:"reload"},"*")},5000)</script>'
            '</body></html>' % (_HEAD, DEFAULT_TITLE, _STYLE, DEFAULT_TITLE, _esc(err)))


_last_error = [None]


class Dashboard(exports.Dashboard):
    def render(self, data) -> str:
        try:
            title, refresh_ms = load_settings()
            return render_page(data, title, refresh_ms)
        except Exception as e:  # never trap: the host would mark us failed
            msg = "%s: %s" % (type(e).__name__, e)
            if msg != _last_error[0]:  # once per distinct error, not per render
                _last_error[0] = msg
                try:
                    log.write(log.Level.ERROR, "render failed: " + msg)
                except Exception:
                    pass
            return error_page(msg)
