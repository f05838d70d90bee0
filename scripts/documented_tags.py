"""List every `--tags` value the docs show, and check each names a play tag of a playbook.

Docs are README.md, docs/**/*.md, roles/*/README.md and the playbooks' comments. Prints one
tag per line (sorted, unique); exits 1 naming the file of any tag no playbook play carries,
so a runbook cannot send an operator to a tag that selects nothing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAGS_OPTION = re.compile(r"--tags[ =]([A-Za-z0-9_,-]+)")


def documents() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "roles").glob("*/README.md")),
        *sorted((ROOT / "playbooks").glob("*.yml")),
    ]


def documented_tags() -> dict[str, list[str]]:
    """Tag -> the files that show it."""
    found: dict[str, list[str]] = {}
    for doc in documents():
        for match in TAGS_OPTION.finditer(doc.read_text()):
            for tag in match.group(1).split(","):
                found.setdefault(tag, []).append(str(doc.relative_to(ROOT)))
    return found


def play_tags() -> set[str]:
    tags = {"all", "always", "never", "tagged", "untagged"}
    for playbook in (ROOT / "playbooks").glob("*.yml"):
        for play in yaml.safe_load(playbook.read_text()) or []:
            value = play.get("tags", []) if isinstance(play, dict) else []
            tags.update([value] if isinstance(value, str) else value)
    return tags


def main() -> int:
    found = documented_tags()
    known = play_tags()
    unknown = {tag: files for tag, files in found.items() if tag not in known}
    for tag, files in sorted(unknown.items()):
        print(f"documented tag {tag!r} selects no play (in {', '.join(sorted(set(files)))})", file=sys.stderr)
    print("\n".join(sorted(found)))
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
