"""The `network` tool: interfaces, addresses, state, and which one carries the default route."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import Tool, ToolContext, ToolError, ToolResult
from localroute.tools.formatting import human_bytes

# Documentation-only addresses (RFC 5737 TEST-NET-3, RFC 3849): routed through the default
# route, owned by nobody. Connecting a UDP socket to one only asks the kernel for a route; no
# packet is sent.
_PROBE_V4 = "203.0.113.1"
_PROBE_V6 = "2001:db8::1"


class NetworkArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interface: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Only this interface, e.g. 'en0' or 'eth0'. Default: all interfaces.",
    )


class NetworkTool(Tool[NetworkArgs]):
    name = "network"
    description = (
        "Network interfaces: up/down, speed, MTU, IPv4/IPv6/MAC addresses, traffic counters, "
        "and which interface the default route uses."
    )
    Args = NetworkArgs

    async def run(self, args: NetworkArgs, ctx: ToolContext) -> ToolResult:
        interfaces, primary = await asyncio.to_thread(_snapshot)
        if args.interface is not None:
            wanted = args.interface.strip()
            if wanted not in interfaces:
                known = ", ".join(sorted(interfaces)) or "(none)"
                raise ToolError(f"no network interface named {wanted!r}; interfaces here: {known}")
            interfaces = {wanted: interfaces[wanted]}
        data = {"default_route": primary, "interfaces": list(interfaces.values())}
        head = "Network interfaces"
        if primary["interface"]:
            source = primary["ipv4"] or primary["ipv6"]
            head += f" (default route via {primary['interface']}, {source})"
        elif args.interface is None:
            head += " (no default route: offline?)"
        lines = [head + ":"] + [f"- {_line(i)}" for i in interfaces.values()]
        return self.result(data, "\n".join(lines))


def _snapshot() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    try:
        io = psutil.net_io_counters(pernic=True)
    except OSError:
        io = {}
    interfaces: dict[str, dict[str, Any]] = {}
    for name in sorted(set(addrs) | set(stats)):
        st = stats.get(name)
        counters = io.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "is_up": st.isup if st else None,
            "speed_mbps": st.speed if st and st.speed else None,
            "mtu": st.mtu if st else None,
            "mac": None,
            "ipv4": [],
            "ipv6": [],
            "bytes_sent": counters.bytes_sent if counters else None,
            "bytes_recv": counters.bytes_recv if counters else None,
        }
        for addr in addrs.get(name, []):
            if addr.family == socket.AF_INET:
                entry["ipv4"].append(_with_prefix(addr.address, addr.netmask))
            elif addr.family == socket.AF_INET6:
                entry["ipv6"].append(_with_prefix(addr.address, addr.netmask))
            elif addr.family == psutil.AF_LINK:
                entry["mac"] = addr.address
        interfaces[name] = entry
    return interfaces, _default_route(interfaces)


def _with_prefix(address: str, netmask: str | None) -> str:
    if not netmask:
        return address
    try:
        bits = int(ipaddress.ip_address(netmask.split("/")[0])).bit_count()
    except ValueError:
        return address
    return f"{address}/{bits}"


def _source_address(family: socket.AddressFamily, probe: str) -> str | None:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _default_route(interfaces: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # psutil has no routing table; the source address the kernel picks for an outbound route,
    # matched back to its interface, names the default-route interface on every OS.
    v4 = _source_address(socket.AF_INET, _PROBE_V4)
    v6 = _source_address(socket.AF_INET6, _PROBE_V6)
    owner = None
    for entry in interfaces.values():
        addresses = {a.split("/")[0].split("%")[0] for a in entry["ipv4"] + entry["ipv6"]}
        if (v4 and v4 in addresses) or (v6 and v6.split("%")[0] in addresses):
            owner = entry["name"]
            break
    return {"interface": owner, "ipv4": v4, "ipv6": v6}


def _line(entry: dict[str, Any]) -> str:
    state = {True: "up", False: "down", None: "state unknown"}[entry["is_up"]]
    parts = [f"{entry['name']}: {state}"]
    if entry["speed_mbps"]:
        parts.append(f"{entry['speed_mbps']} Mb/s")
    if entry["mtu"]:
        parts.append(f"MTU {entry['mtu']}")
    detail = []
    if entry["ipv4"]:
        detail.append("IPv4 " + ", ".join(entry["ipv4"]))
    if entry["ipv6"]:
        detail.append("IPv6 " + ", ".join(entry["ipv6"]))
    if entry["mac"]:
        detail.append(f"MAC {entry['mac']}")
    if entry["bytes_sent"] is not None:
        detail.append(
            f"sent {human_bytes(entry['bytes_sent'])}, received {human_bytes(entry['bytes_recv'])}"
        )
    text = ", ".join(parts)
    return text + (" - " + "; ".join(detail) if detail else "")
