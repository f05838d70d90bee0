# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of vault_pki_cert: the result is marked no_log when it carries a secret (see vault_secret)."""

from __future__ import annotations

from ansible_collections.msa.platform.plugins.action.vault_secret import ActionModule as SecretResultAction


class ActionModule(SecretResultAction):
    """Runs vault_pki_cert and hides a result that carries a secret value."""
