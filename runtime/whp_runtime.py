"""The shared Python runtime: CPython with the bindings of every contract
interface, into which the host loads one plugin's Python source per
instance.

Built once (scripts/build-runtime.sh) into one component, compiled once per
target, and instantiated afresh for every plugin: an instance starts from
the same pre-initialised snapshot (CPython up, the allow-listed standard
library and every binding imported), then `Loader.load` imports the
plugin's `app` module from the sources the host hands over. From then on
the instance serves the one entry point of the plugin's kind, which the
host chose from the plugin's config.

What a plugin can import: its own modules and the shared ones (handed over
by the host), the standard-library modules of `allowlist.STDLIB`, and the
bindings of the contract interfaces it is granted. Everything else fails at
import with a message that says what is available. (The bindings of an
ungranted interface are not importable; and were a plugin to reach the
functions anyway, the host has linked a trapping stub in their place.)
"""

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import marshal
import sys
import traceback
import types as _pytypes

import allowlist

# The standard library a plugin may use, imported now: only modules in the
# build-time snapshot can be imported at run time.
for _name in allowlist.STDLIB:
    importlib.import_module(_name)

# Every interface's bindings, likewise: a plugin's `from wit_world.imports
# import gpio_provider` only works for modules imported now.
import componentize_py_types  # noqa: E402
import wit_world.imports  # noqa: E402
from componentize_py_types import Err  # noqa: E402
from wit_world import exports  # noqa: E402
from wit_world.exports import loader as _loader  # noqa: E402
from wit_world.imports import (  # noqa: E402,F401
    buzzer_controller,
    gpio_provider,
    led_controller,
    log,
    settings,
    state,
    system,
    telemetry,
    types,
)

# Contract interface (WIT name) -> its bindings module under wit_world.imports.
INTERFACES = {
    "gpio-provider": "gpio_provider",
    "led-controller": "led_controller",
    "buzzer-controller": "buzzer_controller",
    "system": "system",
    "state": "state",
    "log": "log",
    "settings": "settings",
    "telemetry": "telemetry",
}

# Plugin kind (the entry point's WIT interface) -> the class a plugin subclasses.
KINDS = {
    "dht22-logic": exports.Dht22Logic,
    "bme680-logic": exports.Bme680Logic,
    "pi-monitor-logic": exports.PiMonitorLogic,
    "dashboard": exports.Dashboard,
}

# Modules present before any plugin is loaded: a plugin module may not
# take one of these names (it would silently get ours instead).
_RESERVED = frozenset(sys.modules) | {"whp_runtime", "allowlist"}

_Failure = _loader.Failure


class _LoadFailure(Exception):
    def __init__(self, failure, message):
        super().__init__(message)
        self.failure = failure
        self.message = message


class NotGrantedError(ModuleNotFoundError):
    """An import of the bindings of an interface the plugin is not granted."""

    def __init__(self, interface, module):
        # `name` is deliberately not the module's: for `from wit_world.imports
        # import x`, importlib swallows a ModuleNotFoundError that names the
        # submodule and raises a vaguer "cannot import name" instead.
        super().__init__(
            f"{module}: the plugin is not granted the `{interface}` interface "
            f"(add it to its grants' interfaces in the host's config)",
            name=interface,
        )
        self.interface = interface


class UnknownModuleError(ModuleNotFoundError):
    """An import of a module that is neither the plugin's nor allowed."""

    def __init__(self, module):
        super().__init__(
            f"No module named '{module}': a plugin can import its own modules, the shared "
            f"ones in plugins/common, and these standard-library modules: "
            f"{', '.join(allowlist.STDLIB)}",
            name=module,
        )


class _Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the plugin's modules from the sources the host handed over,
    compiling each at most once (or taking the host's cached bytecode)."""

    def __init__(self, modules):
        self.modules = {m.name: m for m in modules}
        self.compiled = []
        self.imported = []  # modules the plugin imported, in order
        for m in modules:
            # Tracebacks show the plugin's lines (mtime None: never stale).
            lines = m.source.splitlines(keepends=True)
            linecache.cache[m.path] = (len(m.source), None, lines, m.path)

    def find_spec(self, name, path=None, target=None):
        if name in self.modules:
            return importlib.util.spec_from_loader(name, self, origin=self.modules[name].path)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        m = self.modules[module.__name__]
        self.imported.append(m)
        module.__file__ = m.path
        exec(self.code(m), module.__dict__)

    def get_source(self, name):
        return self.modules[name].source

    def code(self, m):
        if m.bytecode is not None:
            try:
                code = marshal.loads(m.bytecode)
                if isinstance(code, _pytypes.CodeType):
                    return code
            except (ValueError, EOFError, TypeError):
                pass  # not ours, or from another Python: compile instead
        code = compile(m.source, m.path, "exec", dont_inherit=True)
        self.compiled.append(_loader.Compiled(name=m.name, bytecode=marshal.dumps(code)))
        return code


class _Refuser(importlib.abc.MetaPathFinder):
    """Last on the import path: whatever no one else found is refused with
    a message that says what can be imported."""

    def __init__(self, denied):
        self.denied = denied  # bindings module name -> interface

    def find_spec(self, name, path=None, target=None):
        if name in self.denied:
            raise NotGrantedError(self.denied[name], name)
        raise UnknownModuleError(name)


_loaded = None  # (kind, the plugin's object implementing it)


def _plugin_traceback(error, paths):
    """The traceback from the first frame in the plugin's own files (the
    runtime's and importlib's frames say nothing to a plugin author)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in paths:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb)).rstrip()


def _last_line(error):
    return "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]


def _ungranted_imports(modules, denied):
    """Every ungranted interface `modules` import anywhere, in the order
    they appear: the import that failed is only the first, and the user
    should get the whole list in one go."""
    found = []
    for m in modules:
        try:
            tree = ast.parse(m.source, m.path)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "wit_world.imports":
                names = [f"wit_world.imports.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found.extend((node.lineno, node.col_offset, denied[n]) for n in names if n in denied)
    ordered = []
    for _, _, interface in sorted(found):
        if interface not in ordered:
            ordered.append(interface)
    return ordered


def _entry_class(module, kind):
    base = KINDS[kind]
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and obj is not base and base in obj.__mro__
    ]
    if not found:
        raise _LoadFailure(
            _Failure.NO_ENTRY_POINT,
            f"{module.__file__} defines no class implementing `{kind}`: a plugin of this kind "
            f"needs `class {base.__name__}(exports.{base.__name__})` with its methods",
        )
    named = [c for c in found if c.__name__ == base.__name__]
    return (named or found)[0]


def _load(modules, main, kind, granted):
    global _loaded
    if _loaded is not None:
        raise _LoadFailure(_Failure.EXCEPTION, "this runtime instance already has a plugin loaded")
    if kind not in KINDS:
        raise _LoadFailure(
            _Failure.NO_ENTRY_POINT,
            f"unknown plugin kind `{kind}`: this runtime serves {', '.join(KINDS)}",
        )
    for m in modules:
        if m.name in _RESERVED or m.name.split(".")[0] in ("wit_world", "componentize_py_types"):
            raise _LoadFailure(
                _Failure.NAME_CLASH,
                f"{m.path}: a plugin module may not be named `{m.name}`, the name of a module "
                f"of the runtime (the plugin would get that one instead): rename the file",
            )
    denied = {}
    for interface, module in INTERFACES.items():
        if interface not in granted:
            full = f"wit_world.imports.{module}"
            denied[full] = interface
            sys.modules.pop(full, None)
            if hasattr(wit_world.imports, module):
                delattr(wit_world.imports, module)
    sources = _Sources(modules)
    sys.meta_path.insert(0, sources)
    sys.meta_path.append(_Refuser(denied))
    try:
        module = importlib.import_module(main)
        cls = _entry_class(module, kind)
        _loaded = (kind, cls())
    except _LoadFailure:
        raise
    except SyntaxError as e:  # also IndentationError, TabError
        where = f" ({e.filename}, line {e.lineno})" if e.filename else ""
        raise _LoadFailure(_Failure.SYNTAX, f"{type(e).__name__}: {e.msg}{where}") from e
    except NotGrantedError as e:
        interfaces = _ungranted_imports(sources.imported, denied) or [e.interface]
        raise _LoadFailure(_Failure.NOT_GRANTED, ", ".join(interfaces)) from e
    except UnknownModuleError as e:
        raise _LoadFailure(_Failure.UNKNOWN_MODULE, _last_line(e)) from e
    except BaseException as e:
        raise _LoadFailure(_Failure.EXCEPTION, _last_line(e)) from e
    return sources.compiled


class Loader(exports.Loader):
    def load(self, modules, main, kind, granted):
        try:
            compiled = _load(modules, main, kind, granted)
        except _LoadFailure as f:
            cause = f.__cause__
            tb = ""
            if cause is not None:
                tb = _plugin_traceback(cause, {m.path for m in modules})
            raise Err(_loader.LoadError(failure=f.failure, message=f.message, traceback=tb))
        return compiled

    def info(self):
        return _loader.RuntimeInfo(
            python_version=sys.version,
            bytecode_magic=bytes(importlib.util.MAGIC_NUMBER),
            stdlib=list(allowlist.STDLIB),
        )


def _entry(kind):
    if _loaded is None or _loaded[0] != kind:
        raise RuntimeError(f"no `{kind}` plugin is loaded in this runtime instance")
    return _loaded[1]


class Dht22Logic(exports.Dht22Logic):
    def poll(self):
        return _entry("dht22-logic").poll()


class Bme680Logic(exports.Bme680Logic):
    def poll(self):
        return _entry("bme680-logic").poll()


class PiMonitorLogic(exports.PiMonitorLogic):
    def poll(self):
        return _entry("pi-monitor-logic").poll()


class Dashboard(exports.Dashboard):
    def render(self, data):
        return _entry("dashboard").render(data)
