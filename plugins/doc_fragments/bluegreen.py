# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by every blue/green module (plugins/module_utils/_bluegreen.py SHARED_ARGSPEC;
    # the ranges and formats below are checked by option_problems() there, before anything changes).
    DOCUMENTATION = r"""
options:
  balancer:
    description:
      - Which kind of balancer runs on the target host and carries the service's traffic.
      - V(haproxy) changes server weights in backend C(be_<service>) through the runtime API.
      - V(nginx) rewrites C(<nginx_upstream_dir>/<service>.conf) when the gateway sends traffic straight
        to the application hosts. A gateway that goes through HAProxy is flipped on HAProxy, not here.
      - V(consul) keeps the live color in the Consul cluster, for every balancer at once. Each color has a
        prepared query C(<service>-live-<color>); the live color's answers its passing instances and the idle
        color's answers none. Balancers follow them through Consul DNS (the haproxy role's slots on
        C(_<service>-live-<color>._tcp.query.consul)). The state document is the KV key
        C(<consul.prefix>/<service>/state), written with check-and-set, and the lock is a Consul session lock on
        C(<consul.prefix>/<service>/lock), so one flip runs at a time across hosts. The health gate counts the
        service's instances of the target color in Consul's catalog with all their checks passing. It runs on
        any host that reaches an agent; O(state_dir), O(hosts) and the HAProxy and NGINX options are not used.
    type: str
    default: haproxy
    choices: [consul, haproxy, nginx]
  state_dir:
    description:
      - Directory of the per-service state files C(<service>.json) and lock files C(<service>.lock).
        An absolute path.
      - The roles read the same files, so a later C(site.yml) run keeps the live color.
    type: path
    default: /var/lib/msa/bluegreen
  hosts:
    description:
      - Inventory names of the hosts that run the service (the hosts of its group in C(msa_services)).
      - With O(balancer=haproxy) every C(<host>-blue) and C(<host>-green) server must exist in C(be_<service>),
        so a typo fails instead of passing quietly; other servers of the backend are left alone.
      - A backend that finds its instances through Consul DNS (slots C(<color>-<n>), C(haproxy_consul_discovery))
        has no per-host servers; every slot of the service is flipped and O(hosts) filters nothing there.
      - With O(balancer=nginx) these are the hosts whose health is checked; default is the hosts the upstream lists.
      - Each is a host name (letters, digits, C(.), C(-), C(_)) or an IPv6 address in brackets; the list may not be
        empty.
    type: list
    elements: str
  ports:
    description:
      - Ports of the two colors on the application hosts, as in C(msa_services[].ports).
      - Needed with O(balancer=nginx), where the port of the upstream servers tells the live color.
      - Each from 1 to 65535, and the two must differ.
    type: dict
    suboptions:
      blue:
        description: Port of the blue color.
        type: int
        required: true
      green:
        description: Port of the green color.
        type: int
        required: true
  health_path:
    description:
      - HTTP path the service answers with 200 when ready. Used with O(balancer=nginx), where this module
        checks health itself; HAProxy runs its own checks and reports them.
      - Starts with C(/), no spaces or control characters.
    type: str
    default: /health
  health_timeout:
    description: Seconds to wait for one health answer (O(balancer=nginx)), from 0.1 to 300.
    type: float
    default: 3.0
  haproxy_socket:
    description:
      - The HAProxy runtime API socket (C(stats socket ... level admin)), an absolute path.
      - A socket that answers but is not HAProxy's fails naming the path.
    type: path
    default: /run/haproxy/admin.sock
  haproxy_timeout:
    description: Seconds to wait for HAProxy to answer one runtime API command, from 0.1 to 300.
    type: float
    default: 5.0
  haproxy_state_file:
    description:
      - Where the server state is dumped after a flip (HAProxy C(server-state-file)), so that runtime
        weights survive a reload. An absolute path; an empty string skips the dump (with a warning).
    type: path
    default: /var/lib/haproxy/server-state
  nginx_upstream_dir:
    description: Directory of the per-service upstream files C(<service>.conf), an absolute path.
    type: path
    default: /etc/nginx/msa/upstreams
  nginx_binary:
    description:
      - The nginx program, used for C(nginx -t) and, with O(nginx_reload=signal), C(nginx -s reload).
      - A name looked up in C(PATH) (and the sbin directories) or an absolute path. The flip checks that it exists
        and is executable before it changes the upstream file.
    type: path
    default: nginx
  nginx_config:
    description: Main NGINX configuration passed as C(-c) to C(nginx -t) and C(nginx -s reload), an absolute path.
    type: path
    default: /etc/nginx/nginx.conf
  nginx_reload:
    description:
      - How NGINX is reloaded after the upstream file changed and passed C(nginx -t).
      - V(systemd) runs C(systemctl reload nginx); V(signal) runs C(nginx -s reload);
        V(auto) picks V(systemd) when systemd is running.
    type: str
    default: auto
    choices: [auto, signal, systemd]
  consul:
    description:
      - The Consul agent to talk to with O(balancer=consul), and where the state lives. The connection options
        mean what they mean for M(msa.platform.consul_config).
      - "The token needs: C(query_prefix \"<service>-live-\") write, C(key_prefix \"<prefix>/\") write,
        C(session_prefix \"\") write, and read of the service and of nodes (C(service_prefix), C(node_prefix))
        for the health gate. The consul role's entry point C(bluegreen) makes such a token. It is never shown."
    type: dict
    default: {}
    suboptions:
      host:
        description: Host name or IP address of the agent's HTTP API.
        type: str
        default: 127.0.0.1
      port:
        description: Port of the agent's HTTP API.
        type: int
        default: 8500
      scheme:
        description: V(https) for an agent that serves its API over TLS.
        type: str
        default: http
        choices: [http, https]
      token:
        description: ACL token; when left out, E(CONSUL_HTTP_TOKEN), else the anonymous token.
        type: str
      ca_path:
        description: PEM file of the CA of the agent's certificate; when left out, E(CONSUL_CACERT).
        type: path
      validate_certs:
        description: Whether to verify the agent's TLS certificate.
        type: bool
        default: true
      timeout:
        description: Seconds to wait for each answer of the agent, from 1 to 3600.
        type: int
        default: 10
      prefix:
        description: KV path under which each service's state and lock live (C(<prefix>/<service>/state), C(.../lock)).
        type: str
        default: msa/bluegreen
"""
