# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Base: descriptions only. Each module states its own support level.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in check_mode) when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/msa.platform.platform) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - msa.platform.platform
"""

    CHECK_MODE_READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    description: This module only reads and behaves the same in check mode.
    support: full
  diff_mode:
    description: This module only reads; there is nothing to diff.
    support: none
"""
