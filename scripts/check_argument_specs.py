"""Check that each role's meta/argument_specs.yml matches its defaults/main.yml.

For every role: the `main` entry point documents exactly the variables that
defaults/main.yml defines, each option has a description, and every public
variable carries the role's prefix. Exit 1 with one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parent.parent / "roles"


def problems_of(role: Path) -> list[str]:
    name = role.name
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    if not specs_file.is_file():
        return [f"{name}: meta/argument_specs.yml is missing"]
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else None
    defaults = defaults or {}
    specs = (yaml.safe_load(specs_file.read_text()) or {}).get("argument_specs", {})
    if "main" not in specs:
        return [f"{name}: argument_specs has no main entry point"]
    options = specs["main"].get("options") or {}
    problems = []
    for var in sorted(set(defaults) - set(options)):
        problems.append(f"{name}: {var} is in defaults/main.yml but not in argument_specs main")
    for var in sorted(set(options) - set(defaults)):
        problems.append(f"{name}: {var} is in argument_specs main but not in defaults/main.yml")
    prefix = name.lstrip("_") + "_"
    for var in sorted(defaults):
        if not var.startswith((prefix, "_")):
            problems.append(f"{name}: public variable {var} lacks the {prefix} prefix")
    for entry, spec in specs.items():
        for var, option in (spec.get("options") or {}).items():
            if not (option or {}).get("description"):
                problems.append(f"{name}: {entry}.{var} has no description")
    return problems


def main() -> int:
    roles = sorted(p for p in ROLES.iterdir() if p.is_dir())
    problems = [line for role in roles for line in problems_of(role)]
    for line in problems:
        print(line)
    print(f"argument specs: {len(roles)} roles checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
