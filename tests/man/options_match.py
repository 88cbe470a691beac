#!/usr/bin/env python3
"""The man page cannot drift from --help: for every command, the options `ublk-rdma help COMMAND`
lists and those the man page's section "## COMMAND" lists (lines "*-x*, *--name* ...") are the same,
and so are the commands themselves and the global options.

Usage: options_match.py BINARY PAGE.scd
"""
import re
import subprocess
import sys


def help_text(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, check=True).stdout


def help_options(text):
    """Option names in a CLI11 help text's "Options:" block, without -h/--help."""
    names = set()
    in_options = False
    for line in text.splitlines():
        if line.startswith("Options:"):
            in_options = True
            continue
        if in_options and line and not line.startswith(" "):
            in_options = False
        m = re.match(r"^  (-[^ ]+)", line) if in_options else None
        if m:
            names.update(n for n in m.group(1).split(",") if n.startswith("-"))
    return names - {"-h", "--help"}


def help_commands(text):
    block = text.split("Subcommands:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]*)", block, re.M)}


def page_sections(page):
    """{section name: [lines]} for "## name" subsections and "# GLOBAL OPTIONS"."""
    sections, current = {}, None
    for line in page.splitlines():
        m = re.match(r"^(#{1,2}) (.+)$", line)
        if m:
            current = m.group(2) if m.group(1) == "##" or m.group(2) == "GLOBAL OPTIONS" else None
            if current:
                sections[current] = []
            continue
        if current:
            sections[current].append(line)
    return sections


def page_options(lines):
    names = set()
    for line in lines:
        m = re.match(r"^(\*-[^*]+\*(?:, \*-[^*]+\*)*)", line)
        if m:
            names.update(re.findall(r"\*(-[^*]+)\*", m.group(1)))
    return names - {"-h", "--help"}


def main():
    binary, page_path = sys.argv[1], sys.argv[2]
    with open(page_path) as f:
        sections = page_sections(f.read())
    top = help_text(binary, "--help")
    problems = []
    commands = help_commands(top)
    documented = set(sections) - {"GLOBAL OPTIONS"}
    for c in sorted(commands - documented):
        problems.append(f"command '{c}' has no section '## {c}' in the man page")
    for c in sorted(documented - commands):
        problems.append(f"the man page documents a command '{c}' that ublk-rdma does not have")
    checks = [("global options", help_options(top) | {"-h", "--help"}, page_options(sections.get("GLOBAL OPTIONS", [])) | {"-h", "--help"})]
    for c in sorted(commands & documented):
        checks.append((c, help_options(help_text(binary, "help", c)), page_options(sections[c])))
    for what, cli, man in checks:
        for o in sorted(cli - man):
            problems.append(f"{what}: {o} is in --help but not in the man page")
        for o in sorted(man - cli):
            problems.append(f"{what}: {o} is in the man page but not in --help")
    for p in problems:
        print(p)
    print(f"{len(commands)} commands, {sum(len(c[1]) for c in checks)} options compared: "
          f"{'the man page matches --help' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
