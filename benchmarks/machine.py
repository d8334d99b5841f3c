"""The machine a benchmark ran on, named as BENCHMARKS.md names it (the machine kind changes from run to run)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """``/proc/cpuinfo``'s model name, family and model, and the logical CPUs (platform's processor name
    where there is no /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first CPU is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}), "
            f"{os.cpu_count()} logical CPUs")
