#!/usr/bin/env python3
"""Keeps the `--help` listings in docs/cli.md equal to what the binary prints.

docs/cli.md marks each listing with a pair of HTML comments:

    <!-- help: run -->
    ```text
    ...output of `qlm run --help`...
    ```
    <!-- /help -->

(`<!-- help: -->` with no command is `qlm --help`.) Without --check this
rewrites every marked block from the binary; with --check it exits 1 naming
the stale blocks (the ctest `cli.docs_help_current` runs that), so the docs
cannot drift from the flags.

    scripts/cli-help-docs.py [--qlm build/bin/qlm] [--doc docs/cli.md] [--check]
"""
import argparse
import re
import subprocess
import sys

BLOCK = re.compile(r"<!-- help:(?P<cmd>[^>]*?)\s*-->\n.*?<!-- /help -->", re.S)


def help_text(qlm, cmd):
    args = [qlm] + cmd.split() + ["--help"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # CLI11 prints argv[0]; the docs say `qlm`.
    out = re.sub(r"^Usage: \S+", "Usage: qlm", out, count=1, flags=re.M)
    return out.rstrip() + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qlm", default="build/bin/qlm")
    p.add_argument("--doc", default="docs/cli.md")
    p.add_argument("--check", action="store_true")
    a = p.parse_args()
    doc = open(a.doc, encoding="utf-8").read()
    stale = []

    def render(m):
        cmd = m.group("cmd").strip()
        block = "<!-- help:%s -->\n```text\n%s```\n<!-- /help -->" % (
            " " + cmd if cmd else "", help_text(a.qlm, cmd))
        if block != m.group(0):
            stale.append(cmd or "(top level)")
        return block

    new = BLOCK.sub(render, doc)
    if not BLOCK.search(doc):
        sys.exit("%s has no <!-- help: CMD --> blocks" % a.doc)
    if a.check:
        if stale:
            sys.exit("%s: the --help listing of %s differs from %s; run scripts/cli-help-docs.py"
                     % (a.doc, ", ".join(stale), a.qlm))
        print("%s: every --help listing is current" % a.doc)
        return
    with open(a.doc, "w", encoding="utf-8") as f:
        f.write(new)
    print("%s: rewrote %s" % (a.doc, ", ".join(stale) if stale else "nothing (already current)"))


if __name__ == "__main__":
    main()
