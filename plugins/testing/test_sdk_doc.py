"""docs/plugin-sdk.md must stay true: every example in it runs here, the
example plugins it shows are the ones in examples/plugins, every helper
and every part of the test kit has an example, and the standard-library
list it and the README give is the runtime's allow-list.

How the page's code blocks are treated (the page says so too):

* ```python file=PATH  — written to PATH in a scratch folder (a plugin's
  source, say), for the examples after it;
* ```python copy-of=PATH and ```toml copy-of=PATH — must be the file PATH
  of the repository, word for word;
* ```python  — run, in order, each in a fresh namespace, with the scratch
  folder as the working directory;
* ```toml — must parse.
"""

import ast
import re
import tomllib
from pathlib import Path

import pytest

import allowlist
import fakehost
from fakehost import FakeHost

ROOT = fakehost.ROOT
DOC = ROOT / "docs" / "plugin-sdk.md"
README = ROOT / "README.md"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


class Block:
    def __init__(self, info, code, line):
        words = info.split()
        self.lang = words[0] if words else ""
        self.options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        self.code, self.line = code, line

    def __repr__(self):
        return f"docs/plugin-sdk.md:{self.line}"


def blocks(text):
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in _FENCE.finditer(text)]


DOC_BLOCKS = blocks(DOC.read_text(encoding="utf-8"))
PYTHON = [b for b in DOC_BLOCKS if b.lang == "python"]
RUN = [b for b in PYTHON if not b.options]


def test_the_page_has_examples():
    assert len(RUN) >= 25, "the page lost its examples"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The scratch folder, with every `file=` block of the page written."""
    root = tmp_path_factory.mktemp("sdk-doc")
    for b in PYTHON:
        if "file" in b.options:
            path = root / b.options["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(b.code, encoding="utf-8")
    return root


@pytest.mark.parametrize("block", RUN, ids=repr)
def test_every_example_runs(block, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    namespace = {"__name__": "__sdk_doc__"}
    try:
        exec(compile(block.code, f"docs/plugin-sdk.md:{block.line}", "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, FakeHost):
                value.close()


@pytest.mark.parametrize("block", [b for b in DOC_BLOCKS if "copy-of" in b.options], ids=repr)
def test_shown_files_are_the_repositorys(block):
    path = ROOT / block.options["copy-of"]
    assert path.is_file(), f"{block}: no {path}"
    assert block.code == path.read_text(encoding="utf-8"), (
        f"{block} shows {block.options['copy-of']} as it no longer is: copy the file into the page")


@pytest.mark.parametrize("block", [b for b in DOC_BLOCKS if b.lang == "toml"], ids=repr)
def test_toml_blocks_parse(block):
    tomllib.loads(block.code)


def _run_code():
    return "\n".join(b.code for b in RUN)


def _common(name):
    """The public functions and classes a shared module defines (read from
    its source: the module itself imports the bindings)."""
    tree = ast.parse((ROOT / "plugins" / "common" / f"{name}.py").read_text(encoding="utf-8"))
    return sorted(n.name for n in tree.body
                  if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_"))


@pytest.mark.parametrize("module", ["plugin_support", "readings_support", "alerts", "iaq"])
def test_every_helper_has_an_example(module):
    code = _run_code()
    missing = [f for f in _common(module) if not re.search(rf"\b{f}\b", code)]
    assert not missing, f"docs/plugin-sdk.md has no example of {module}.{', '.join(missing)}"


def test_every_part_of_the_test_kit_has_an_example():
    code = _run_code()
    host = FakeHost()
    parts = [n for n in dir(host) if not n.startswith("_")]
    parts += [n for n in fakehost.__all__ if n not in ("PLUGINS_DIR",)]
    parts += ["set", "fail", "queue", "reads", "shown", "buffer", "syncs", "calls", "remove",
              "clear", "latest", "seen", "value"]
    missing = sorted({p for p in parts if not re.search(rf"\b{p}\b", code)})
    host.close()
    assert not missing, f"docs/plugin-sdk.md has no example of {', '.join(missing)}"


def _listed_modules(text, heading):
    """The backticked module names in the paragraph that starts with
    `heading`."""
    start = text.index(heading)
    end = text.find("\n\n", start)
    return sorted(re.findall(r"`([a-z0-9_.]+)`", text[start:end]))


@pytest.mark.parametrize("path", [DOC, README], ids=lambda p: p.name)
def test_the_standard_library_list_is_the_allow_list(path):
    listed = _listed_modules(path.read_text(encoding="utf-8"),
                             "Standard-library modules a plugin may import:")
    assert listed == sorted(allowlist.STDLIB), (
        f"{path.name} lists the standard library differently from runtime/allowlist.py: "
        f"missing {sorted(set(allowlist.STDLIB) - set(listed))}, "
        f"extra {sorted(set(listed) - set(allowlist.STDLIB))}")


def test_the_readme_links_the_reference():
    for path in (README, ROOT / "plugins" / "README.md"):
        assert "docs/plugin-sdk.md" in path.read_text(encoding="utf-8"), path
