"""How a plugin's Python source is loaded and what it may import.

Shared, as is, by the runtime (whp_runtime.py, inside WebAssembly) and by
the test kit (plugins/testing/fakehost, in plain CPython): both load a
plugin the same way and refuse the same imports with the same words.

A plugin is a set of modules (its own and the shared ones), each with an
import name, a path for tracebacks (`dht22/app.py`) and its source. They
are served by a finder first on `sys.meta_path`; their code runs with a
`__builtins__` whose `__import__` lets them import only:

* each other (the plugin's modules),
* the standard-library modules of the allow-list, and built-in modules,
* the bindings (`wit_world`, `componentize_py_types`), where the modules of
  interfaces the plugin is not granted are not importable.

Anything else fails with `UnknownModuleError`, which names the module and
the list. The standard library's own imports are not affected.
"""

import ast
import builtins
import importlib
import importlib.abc
import importlib.util
import linecache
import marshal
import sys
import traceback
import types as _pytypes

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
    "readings": "readings",
}

# The ways a load fails (the runtime maps them onto its WIT enum).
SYNTAX = "syntax"
UNKNOWN_MODULE = "unknown-module"
NOT_GRANTED = "not-granted"
NO_ENTRY_POINT = "no-entry-point"
NAME_CLASH = "name-clash"
EXCEPTION = "exception"

_BINDINGS = ("wit_world", "componentize_py_types")


class LoadFailure(Exception):
    """Why a plugin did not load: `failure` (one of the constants above),
    a one-line `message`, and the `traceback` from the plugin's own frames."""

    def __init__(self, failure, message, traceback=""):
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.traceback = traceback


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

    def __init__(self, module, stdlib):
        super().__init__(
            f"No module named '{module}': a plugin can import its own modules, the shared "
            f"ones in plugins/common, and these standard-library modules: "
            f"{', '.join(sorted(stdlib))}",
            name=module,
        )


class _Sources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the plugin's modules from their sources, compiling each at
    most once (or taking the bytecode the host cached)."""

    def __init__(self, modules, plugin_builtins):
        self.modules = {m.name: m for m in modules}
        self.builtins = plugin_builtins
        self.compiled = []  # (name, bytecode) compiled here, for the cache
        self.imported = []  # modules the plugin imported, in order
        self.objects = {}  # name -> the module object made here
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
        self.objects[m.name] = module
        module.__file__ = m.path
        module.__builtins__ = self.builtins
        exec(self.code(m), module.__dict__)

    def get_source(self, name):
        return self.modules[name].source

    def code(self, m):
        if getattr(m, "bytecode", None) is not None:
            try:
                code = marshal.loads(m.bytecode)
                if isinstance(code, _pytypes.CodeType):
                    return code
            except (ValueError, EOFError, TypeError):
                pass  # not ours, or from another Python: compile instead
        code = compile(m.source, m.path, "exec", dont_inherit=True)
        self.compiled.append((m.name, marshal.dumps(code)))
        return code


class _Refuser(importlib.abc.MetaPathFinder):
    """Early on the import path (before any finder that could find the
    bindings' files): the bindings of an ungranted interface."""

    def __init__(self, denied):
        self.denied = denied  # bindings module name -> interface

    def find_spec(self, name, path=None, target=None):
        if name in self.denied:
            raise NotGrantedError(self.denied[name], name)
        return None


def _import_policy(own, stdlib):
    """The `__import__` of the plugin's code."""
    real_import = builtins.__import__

    def allowed(name):
        top = name.partition(".")[0]
        if top in own or top in _BINDINGS or name in stdlib:
            return True
        # A submodule an allowed module has already imported (os.path).
        return top in stdlib and name in sys.modules

    def plugin_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and not allowed(name):
            raise UnknownModuleError(name, stdlib)
        return real_import(name, globals, locals, fromlist, level)

    return plugin_import


def _imported_names(module):
    """The module names a module's source imports, in source order."""
    try:
        tree = ast.parse(module.source, module.path)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.extend((node.lineno, node.col_offset, n) for n in names)
    return [n for _, _, n in sorted(found)]


def ungranted_imports(modules, main, denied):
    """Every ungranted interface the plugin's code imports, following its
    imports of its own modules from `main`, in the order they appear: the
    import that failed is only the first, and the user should get the whole
    list in one go."""
    by_name = {m.name: m for m in modules}
    ordered, seen, todo = [], set(), [main]
    while todo:
        name = todo.pop(0)
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        for imported in _imported_names(by_name[name]):
            if imported in denied and denied[imported] not in ordered:
                ordered.append(denied[imported])
            elif imported in by_name:
                todo.append(imported)
    return ordered


def plugin_traceback(error, paths):
    """The traceback from the first frame in the plugin's own files (the
    loader's and importlib's frames say nothing to a plugin author)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename not in paths:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb)).rstrip()


def _last_line(error):
    return "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]


def entry_class(module, base, kind):
    """The class of `module` that implements `base` (the export protocol of
    the plugin's kind)."""
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and obj is not base and base in obj.__mro__
    ]
    if not found:
        raise LoadFailure(
            NO_ENTRY_POINT,
            f"{module.__file__} defines no class implementing `{kind}`: a plugin of this kind "
            f"needs `class {base.__name__}(exports.{base.__name__})` with its methods",
        )
    named = [c for c in found if c.__name__ == base.__name__]
    return (named or found)[0]


class Loaded:
    """A loaded plugin: its main module, the object serving its entry point,
    and the bytecode compiled while loading."""

    def __init__(self, sources, refuser):
        self.module = None
        self.entry = None
        self.compiled = sources.compiled
        self._sources = sources
        self._refuser = refuser

    @property
    def finder(self):
        """The finder serving the plugin's modules."""
        return self._sources

    def modules(self):
        """The plugin's modules imported so far, by name."""
        return dict(self._sources.objects)

    def unload(self):
        """Forgets the plugin's modules and finders (the test kit loads many
        plugins in one process; the runtime never unloads)."""
        for f in (self._sources, self._refuser):
            if f in sys.meta_path:
                sys.meta_path.remove(f)
        for name, module in self._sources.objects.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


# Names a plugin module may not take: the standard library's (the plugin
# would get that module instead, or shadow it for the runtime), this
# loader's and the runtime's own.
RESERVED = frozenset(sys.stdlib_module_names) | {"whp_runtime", "plugin_loader", "allowlist"}


def load(modules, main, kind, base, granted, stdlib):
    """Imports `main` from `modules` as a plugin of `kind` (whose export
    protocol is `base`), granted the interfaces `granted`; `stdlib` is the
    allow-list. Raises `LoadFailure`, leaving nothing of the plugin behind."""
    for m in modules:
        if m.name in RESERVED or m.name in _BINDINGS:
            raise LoadFailure(
                NAME_CLASH,
                f"{m.path}: a plugin module may not be named `{m.name}`, the name of a "
                f"standard-library or runtime module: rename the file",
            )
    wit_imports = importlib.import_module("wit_world.imports")
    denied = {}
    for interface, module in INTERFACES.items():
        if interface not in granted:
            full = f"wit_world.imports.{module}"
            denied[full] = interface
            sys.modules.pop(full, None)
            if hasattr(wit_imports, module):
                delattr(wit_imports, module)
    plugin_builtins = dict(vars(builtins))
    plugin_builtins["__import__"] = _import_policy({m.name for m in modules}, frozenset(stdlib))
    sources = _Sources(modules, plugin_builtins)
    refuser = _Refuser(denied)
    sys.meta_path.insert(0, refuser)
    sys.meta_path.insert(0, sources)
    # A fresh import of every module of the plugin (the test kit may hold
    # another plugin's modules of the same names).
    for m in modules:
        sys.modules.pop(m.name, None)
    paths = {m.path for m in modules}

    def fail(failure, message, error):
        return LoadFailure(failure, message, plugin_traceback(error, paths))

    loaded = Loaded(sources, refuser)
    try:
        loaded.module = importlib.import_module(main)
        loaded.entry = entry_class(loaded.module, base, kind)()
        return loaded
    except LoadFailure:
        loaded.unload()
        raise
    except BaseException as e:
        loaded.unload()
        if isinstance(e, SyntaxError):  # also IndentationError, TabError
            where = f" ({e.filename}, line {e.lineno})" if e.filename else ""
            raise fail(SYNTAX, f"{type(e).__name__}: {e.msg}{where}", e) from e
        if isinstance(e, NotGrantedError):
            interfaces = ungranted_imports(modules, main, denied) or [e.interface]
            raise fail(NOT_GRANTED, ", ".join(interfaces), e) from e
        if isinstance(e, UnknownModuleError):
            raise fail(UNKNOWN_MODULE, _last_line(e), e) from e
        raise fail(EXCEPTION, _last_line(e), e) from e
