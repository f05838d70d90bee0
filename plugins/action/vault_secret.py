# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of the Vault modules that return secret values (vault_secret, vault_approle,
vault_pki_cert): runs the module, then marks the result no_log when it carries a secret.

A module cannot do that itself: ansible-core drops ``_ansible_no_log`` from module results, and
adding the values to ``no_log_values`` would mask them in the registered result too, which is the
caller's only way to get them. Marked here, callbacks, logs and ``-v`` output show nothing of the
result while ``register`` keeps the values.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

# Result keys that hold secret values, for each module that can return them.
SECRET_RESULT_KEYS = ("secret", "secret_id", "private_key")


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(self._execute_module(task_vars=task_vars))
        if any(result.get(key) for key in SECRET_RESULT_KEYS):
            result["_ansible_no_log"] = True
        return result
