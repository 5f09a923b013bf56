"""The clock-sensitive tests again, as on a machine that booted seconds ago, in a far time zone.

Earlier versions kept "never" as ``0.0`` of ``time.monotonic()``, which reads as "long
ago" only on a machine that has been up for a while: ``make test`` failed within an hour
of boot. A Linux time namespace (``unshare --time``) moves CLOCK_MONOTONIC and
CLOCK_BOOTTIME back, so these tests run in a child pytest whose clocks say the machine
booted five seconds ago, with ``TZ`` fourteen hours ahead of UTC (the whole suite was also
run under Pacific/Pago_Pago, eleven hours behind: see the issue 13 note).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TESTS = ["tests/test_tracking_reader.py", "tests/test_tracking_logger.py", "tests/test_alias_lookup.py",
               "tests/test_tracking_spool.py"]


def _can_fake_a_boot() -> str | None:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux's unshare (util-linux) for a time namespace"
    probe = subprocess.run(["unshare", "--time", "--fork", "--monotonic=-1", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a time namespace here ({probe.stderr.strip() or probe.returncode}); needs root"
    return None


def _host_uptime_s() -> int:
    """Seconds since the machine booted, as the host sees them: a new namespace's offsets
    count from the host's clocks, and this run may itself be inside a time namespace (a
    whole-suite fresh-boot check), whose own offset is in /proc/self/timens_offsets."""
    up = int(time.clock_gettime(time.CLOCK_BOOTTIME))
    offsets = Path("/proc/self/timens_offsets")
    if offsets.exists():
        for line in offsets.read_text().splitlines():
            name, seconds, _ = line.split()
            if name == "boottime":
                up -= int(seconds)
    return up


@pytest.mark.slow
def test_clock_sensitive_tests_pass_seconds_after_boot_in_a_far_time_zone(tmp_path, tz="Pacific/Kiritimati"):
    why_not = _can_fake_a_boot()
    if why_not:
        pytest.skip(why_not)
    shift = max(0, _host_uptime_s() - 5)
    env = dict(os.environ, TZ=tz)
    done = subprocess.run(
        ["unshare", "--time", "--fork", f"--monotonic=-{shift}", f"--boottime=-{shift}",
         sys.executable, "-c", "import time, sys; assert time.monotonic() < 60, time.monotonic(); "
         "import pytest; sys.exit(pytest.main(sys.argv[1:]))",
         "-q", "-x", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"), *CLOCK_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
